CREATE DATABASE shop2 # comment
