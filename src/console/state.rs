//! What every console handler is given. (A stand-in in the pages branch: the server's own
//! version replaces it at merge, with these same fields.)

use sqlx::PgPool;

#[derive(Clone)]
pub struct ConsoleState {
    pub pool: PgPool,
    /// The local server's short name (`HUB1`): a bare receive connector name is one of its.
    pub server: String,
    pub fqdn: String,
}
