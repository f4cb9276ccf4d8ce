-- Runs once, when the mysql service initialises its data volume (docker-compose.yml).
-- CDC user with the minimum privileges for binlog streaming and a locking snapshot.
CREATE DATABASE IF NOT EXISTS shop CHARACTER SET utf8mb4 COLLATE utf8mb4_0900_ai_ci;
CREATE USER IF NOT EXISTS 'etl_cdc'@'%' IDENTIFIED BY 'etl_cdc';
GRANT REPLICATION SLAVE, REPLICATION CLIENT, SELECT, RELOAD, LOCK TABLES ON *.* TO 'etl_cdc'@'%';
FLUSH PRIVILEGES;
