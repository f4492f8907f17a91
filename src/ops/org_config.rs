//! The organisation-wide configuration objects Exchange keeps one of (Set-TransportConfig,
//! Set-SenderFilterConfig, Set-RecipientFilterConfig, Set-IPBlockListConfig...): their Get- and
//! Set- are the same steps whatever the object, so they are written once here.

use std::future::Future;

use sqlx::PgConnection;

use super::props::{Ctx, Object, Values};
use super::{Change, OpError};
use crate::org::OrgError;
use crate::org::ip_block_list::{BlockListConfig, ProvidersConfig};
use crate::org::recipient_filter::RecipientFilterConfig;
use crate::org::sender_filter::SenderFilterConfig;
use crate::org::transport_config::TransportConfig;

/// A one-row configuration object as the database keeps it.
pub trait OrgConfig: Clone + Send + Sized {
    fn load(conn: &mut PgConnection) -> impl Future<Output = Result<Self, OrgError>> + Send;
    /// Stores the object; it may normalise it first, and what it stores is what Set- reports.
    fn store(
        &mut self,
        conn: &mut PgConnection,
    ) -> impl Future<Output = Result<(), OrgError>> + Send;
}

/// Get-: the stored object.
pub async fn get<C: OrgConfig>(tx: &mut PgConnection) -> Result<C, OpError> {
    Ok(C::load(tx).await?)
}

/// Set-: the values applied through the object's property table, then `check` (validation or
/// normalisation) on the result; nothing is stored when either refuses.
pub async fn set<C: OrgConfig>(
    tx: &mut PgConnection,
    table: &Object<C>,
    values: &Values,
    check: impl FnOnce(&mut C) -> Result<(), OpError>,
) -> Result<Change<C>, OpError> {
    let before = get::<C>(tx).await?;
    let mut after = before.clone();
    table.apply(&mut after, values, false, &Ctx::default())?;
    check(&mut after)?;
    after.store(tx).await?;
    Ok(Change { before, after })
}

/// Set- for an object whose only check is its property table's (ranges, allowed values).
pub async fn set_validated<C: OrgConfig>(
    tx: &mut PgConnection,
    table: &Object<C>,
    values: &Values,
) -> Result<Change<C>, OpError> {
    set(tx, table, values, |c| table.validate(c)).await
}

macro_rules! org_config {
    ($($t:ty),*) => {$(
        impl OrgConfig for $t {
            async fn load(conn: &mut PgConnection) -> Result<Self, OrgError> {
                <$t>::load_in(conn).await
            }
            async fn store(&mut self, conn: &mut PgConnection) -> Result<(), OrgError> {
                self.update(conn).await
            }
        }
    )*};
}

org_config!(
    TransportConfig,
    SenderFilterConfig,
    RecipientFilterConfig,
    ProvidersConfig,
    BlockListConfig
);
