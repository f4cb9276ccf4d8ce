//! The OpenAPI 3.1 document, generated with utoipa from the endpoint catalog and the gold
//! tables' columns and comments as the warehouse declares them.

use axum::{extract::State, response::IntoResponse, Json};
use utoipa::openapi::{
    path::{HttpMethod, OperationBuilder, ParameterBuilder, ParameterIn, PathItem},
    request_body::RequestBodyBuilder,
    response::{ResponseBuilder, ResponsesBuilder},
    schema::{ArrayBuilder, KnownFormat, ObjectBuilder, Schema, SchemaFormat, SchemaType, Type},
    security::{HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme},
    ComponentsBuilder, ContentBuilder, HeaderBuilder, InfoBuilder, OpenApi, OpenApiBuilder,
    PathsBuilder, Required,
};

use super::catalog::{self, Column, Endpoint, Op, Schema as Warehouse};
use super::query::{DEFAULT_LIMIT, MAX_LIMIT};
use super::Problem;
use crate::ssr::server::AppState;

/// `GET /api-docs/openapi.json`.
pub async fn document(State(state): State<AppState>) -> Result<impl IntoResponse, Problem> {
    let schema = state.api.schema(&state.pool).await?;
    Ok(Json(build(&schema, state.api.export_cap)))
}

fn nullable(t: Type) -> SchemaType {
    SchemaType::from_iter([t, Type::Null])
}

fn object(t: Type) -> ObjectBuilder {
    ObjectBuilder::new().schema_type(t)
}

/// The JSON schema of a column's values (as `row_to_json` writes them).
fn column_schema(c: &Column) -> Schema {
    let base = c.pg_type.split('(').next().unwrap_or(&c.pg_type).trim();
    let (t, format) = match base {
        "smallint" | "integer" | "bigint" => (Type::Integer, None),
        "numeric" | "double precision" | "real" => (Type::Number, None),
        "boolean" => (Type::Boolean, None),
        "date" => (Type::String, Some(KnownFormat::Date)),
        "timestamp with time zone" => (Type::String, Some(KnownFormat::DateTime)),
        "jsonb" | "json" => {
            return Schema::Object(
                ObjectBuilder::new()
                    .schema_type(SchemaType::AnyValue)
                    .description(c.comment.clone())
                    .build(),
            )
        }
        _ => (Type::String, None),
    };
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(nullable(t))
            .format(format.map(SchemaFormat::KnownFormat))
            .description(c.comment.clone())
            .build(),
    )
}

fn problem_schema() -> Schema {
    Schema::Object(
        ObjectBuilder::new()
            .schema_type(Type::Object)
            .property("type", object(Type::String))
            .property("title", object(Type::String))
            .property("status", object(Type::Integer))
            .property("detail", object(Type::String))
            .required("status")
            .required("detail")
            .build(),
    )
}

fn problem(description: &str) -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description(description)
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(problem_schema())).build(),
        )
        .build()
}

fn rate_limited() -> utoipa::openapi::Response {
    ResponseBuilder::new()
        .description("Rate limit reached")
        .header(
            "Retry-After",
            HeaderBuilder::new()
                .schema(object(Type::Integer))
                .description(Some("Seconds to wait"))
                .build(),
        )
        .content(
            "application/problem+json",
            ContentBuilder::new().schema(Some(problem_schema())).build(),
        )
        .build()
}

fn query_param(name: &str, description: &str, schema: Schema) -> utoipa::openapi::path::Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::False)
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

fn string_param(name: &str, description: &str) -> utoipa::openapi::path::Parameter {
    query_param(
        name,
        description,
        Schema::Object(object(Type::String).build()),
    )
}

/// The schema of a filter's values: typed for ranges, a (comma-separated) string otherwise.
fn filter_schema(f: &catalog::Filter, c: Option<&Column>) -> Schema {
    let ty = c.map_or("text", |c| c.pg_type.as_str());
    let base = ty.split('(').next().unwrap_or(ty).trim();
    let typed = |t: Type, format: Option<KnownFormat>| {
        Schema::Object(
            object(t)
                .format(format.map(SchemaFormat::KnownFormat))
                .build(),
        )
    };
    match (f.op, base) {
        (_, "boolean") => typed(Type::Boolean, None),
        (Op::Ge | Op::Le, "date") => typed(Type::String, Some(KnownFormat::Date)),
        (Op::Ge | Op::Le, "timestamp with time zone") => {
            typed(Type::String, Some(KnownFormat::DateTime))
        }
        (Op::Ge | Op::Le, "smallint" | "integer" | "bigint") => typed(Type::Integer, None),
        (Op::Ge | Op::Le, "numeric" | "double precision" | "real") => typed(Type::Number, None),
        (Op::Eq, "date") => Schema::Object(
            object(Type::String)
                .pattern(Some(r"^\d{4}-\d{2}-\d{2}(,\d{4}-\d{2}-\d{2})*$"))
                .build(),
        ),
        _ => Schema::Object(object(Type::String).max_length(Some(200)).build()),
    }
}

/// `sort`: the exposed columns, each maybe prefixed by `-`, comma-separated.
fn sort_schema(columns: &[&Column]) -> Schema {
    let names: Vec<String> = columns
        .iter()
        .filter(|c| c.pg_type != "jsonb" && c.pg_type != "json")
        .map(|c| regex_escape(&c.name))
        .collect();
    let one = format!("-?({})", names.join("|"));
    Schema::Object(
        object(Type::String)
            .pattern(Some(format!("^{one}(,{one})*$")))
            .build(),
    )
}

fn regex_escape(text: &str) -> String {
    text.chars()
        .flat_map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                vec![c]
            } else {
                vec!['\\', c]
            }
        })
        .collect()
}

fn filter_doc(f: &catalog::Filter, c: Option<&Column>) -> String {
    let ty = c.map_or("", |c| c.pg_type.as_str());
    match f.op {
        Op::Eq => format!(
            "{} equals this value ({ty}); several values separated by commas",
            f.column
        ),
        Op::Ge => format!("{} on or after this value ({ty})", f.column),
        Op::Le => format!("{} on or before this value ({ty})", f.column),
    }
}

fn operation(e: &Endpoint, wh: &Warehouse, export_cap: u64) -> utoipa::openapi::path::Operation {
    let columns = wh.columns(e);
    let table = wh.tables.get(e.table);
    let mut row = ObjectBuilder::new().schema_type(Type::Object);
    if let Ok(cols) = &columns {
        for c in cols {
            row = row
                .property(c.name.clone(), column_schema(c))
                .required(c.name.clone());
        }
    }
    let mut page = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("data", ArrayBuilder::new().items(row))
        .property("limit", object(Type::Integer))
        .property("offset", object(Type::Integer))
        .property("returned", object(Type::Integer))
        .property(
            "next",
            ObjectBuilder::new()
                .schema_type(nullable(Type::String))
                .description(Some("Link to the next page; null on the last one")),
        )
        .required("data")
        .required("limit")
        .required("offset")
        .required("returned")
        .required("next");
    if e.cursor {
        page = page
            .property(
                "next_cursor",
                ObjectBuilder::new()
                    .schema_type(nullable(Type::String))
                    .description(Some(
                        "Pass as cursor= for the next page; null on the last one",
                    )),
            )
            .required("next_cursor");
    }
    let description = match (&columns, table.and_then(|t| t.comment.clone())) {
        (Err(why), _) => format!("Not available yet: {why}"),
        (Ok(_), Some(c)) => format!("{c}\n\nTable `{}`. Needs the {} role.", e.table, e.role),
        (Ok(_), None) => format!("Table `{}`. Needs the {} role.", e.table, e.role),
    };
    let col = |name: &str| {
        columns
            .as_ref()
            .ok()
            .and_then(|cs| cs.iter().find(|c| c.name == name).copied())
    };
    let mut op = OperationBuilder::new()
        .tag("marts")
        .operation_id(Some(format!("get_{}", e.name.replace('-', "_"))))
        .summary(Some(e.summary))
        .description(Some(description));
    for f in e.filters {
        let c = col(f.column);
        let doc = filter_doc(f, c);
        op = op.parameter(query_param(f.param, &doc, filter_schema(f, c)));
    }
    op = op
        .parameter(query_param(
            "limit",
            &format!("Rows per page: default {DEFAULT_LIMIT}, at most {MAX_LIMIT} (CSV: default and maximum {export_cap})"),
            Schema::Object(object(Type::Integer).minimum(Some(0)).maximum(Some(export_cap.max(MAX_LIMIT) as f64)).build()),
        ))
        .parameter(query_param(
            "format",
            "json (default) or csv; Accept: text/csv does the same. CSV needs the analyst role.",
            Schema::Object(object(Type::String).enum_values(Some(["json", "csv"])).build()),
        ));
    if e.cursor {
        op = op.parameter(string_param(
            "cursor",
            "next_cursor of the previous page (opaque, signed)",
        ));
    } else {
        op = op
            .parameter(query_param(
                "offset",
                "Rows to skip",
                Schema::Object(object(Type::Integer).minimum(Some(0)).maximum(Some(1_000_000_000)).build()),
            ))
            .parameter(query_param(
                "sort",
                "Columns to sort by, comma-separated; prefix with - for descending. The key breaks ties.",
                sort_schema(columns.as_deref().unwrap_or(&[])),
            ));
    }
    let ok = ResponseBuilder::new()
        .description("One page of rows")
        .content(
            "application/json",
            ContentBuilder::new().schema(Some(page)).build(),
        )
        .content(
            "text/csv",
            ContentBuilder::new()
                .schema(Some(object(Type::String)))
                .build(),
        )
        .build();
    op.responses(
        ResponsesBuilder::new()
            .response("200", ok)
            .response("400", problem("Invalid parameter"))
            .response("401", problem("No valid token"))
            .response("403", problem("The token's role is not enough"))
            .response("429", rate_limited())
            .response("503", problem("The warehouse or the mart is not available")),
    )
    .build()
}

fn auth_operation(id: &str, summary: &str, fields: &[&str]) -> utoipa::openapi::path::Operation {
    let mut body = ObjectBuilder::new().schema_type(Type::Object);
    for f in fields {
        body = body.property(*f, object(Type::String)).required(*f);
    }
    let tokens = ObjectBuilder::new()
        .schema_type(Type::Object)
        .property("access_token", object(Type::String))
        .property("token_type", object(Type::String))
        .property("expires_in", object(Type::Integer))
        .property("refresh_token", object(Type::String))
        .property("refresh_expires_in", object(Type::Integer))
        .property("username", object(Type::String))
        .property(
            "role",
            object(Type::String).enum_values(Some(["viewer", "analyst", "admin"])),
        )
        .required("access_token")
        .required("refresh_token")
        .required("expires_in");
    OperationBuilder::new()
        .tag("auth")
        .operation_id(Some(id))
        .summary(Some(summary))
        .request_body(Some(
            RequestBodyBuilder::new()
                .required(Some(Required::True))
                .content(
                    "application/json",
                    ContentBuilder::new()
                        .schema(Some(body.additional_properties(Some(
                            utoipa::openapi::schema::AdditionalProperties::FreeForm(false),
                        ))))
                        .build(),
                )
                .build(),
        ))
        .securities(Some(Vec::<SecurityRequirement>::new()))
        .responses(
            ResponsesBuilder::new()
                .response(
                    "200",
                    ResponseBuilder::new()
                        .description("A new access token (HS256 JWT) and refresh token")
                        .content(
                            "application/json",
                            ContentBuilder::new().schema(Some(tokens)).build(),
                        ),
                )
                .response("400", problem("Invalid body"))
                .response("401", problem("Wrong credentials or invalid refresh token"))
                .response("415", problem("The body is not application/json"))
                .response("429", rate_limited())
                .response("503", problem("The warehouse is not available")),
        )
        .build()
}

/// The whole document.
pub fn build(wh: &Warehouse, export_cap: u64) -> OpenApi {
    let mut paths = PathsBuilder::new()
        .path(
            "/api/v1/auth/login",
            PathItem::new(
                HttpMethod::Post,
                auth_operation(
                    "login",
                    "Sign in: username and password for tokens",
                    &["username", "password"],
                ),
            ),
        )
        .path(
            "/api/v1/auth/refresh",
            PathItem::new(
                HttpMethod::Post,
                auth_operation(
                    "refresh",
                    "A new access token for a refresh token",
                    &["refresh_token"],
                ),
            ),
        );
    for e in catalog::ENDPOINTS {
        paths = paths.path(
            format!("/api/v1/{}", e.name),
            PathItem::new(HttpMethod::Get, operation(e, wh, export_cap)),
        );
    }
    let components = ComponentsBuilder::new()
        .security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .bearer_format("JWT")
                    .description(Some("POST /api/v1/auth/login returns the token"))
                    .build(),
            ),
        )
        .build();
    OpenApiBuilder::new()
        .info(
            InfoBuilder::new()
                .title("Sales analytics API")
                .version(env!("CARGO_PKG_VERSION"))
                .description(Some(
                    "Read-only access to the warehouse's gold marts. Sign in at /api/v1/auth/login \
                     and send the access token as `Authorization: Bearer <token>`.",
                ))
                .build(),
        )
        .paths(paths.build())
        .components(Some(components))
        .security(Some([SecurityRequirement::new("bearer", Vec::<String>::new())]))
        .build()
}
