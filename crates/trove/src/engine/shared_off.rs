//! The shared tier's place on the request path when trove is built without it (cargo
//! feature `shared` off): nothing is looked up or uploaded, and a configuration that
//! names a shared tier is refused when the engine opens, naming the feature.

use std::time::Duration;

use trove_config::Config;
use trove_fingerprint::Digest;
use trove_store::NewRecord;

use crate::engine::{Engine, FlightValue};
use crate::reason::{Residency, Why};
use crate::{Error, Recipe};

/// Never made: without the feature there is no shared tier.
pub(crate) enum SharedState {}

/// Never made: without the feature there are no leases.
pub(crate) enum Claim {}

impl SharedState {
    pub(crate) fn open(
        config: &Config,
        _secret: Option<crate::engine::Secret>,
    ) -> Result<Option<SharedState>, Error> {
        match &config.shared {
            None => Ok(None),
            Some(shared) => Err(Error::ConfigFile(
                config.error_at(
                    shared.at,
                    "this trove was built without the shared tier".to_owned(),
                    Some(
                        "build it with the cargo feature `shared` (on in the `trove` binary and \
                     the Python package), or remove `shared:`"
                            .to_owned(),
                    ),
                ),
            )),
        }
    }

    pub(crate) fn uploads(&self) -> (u64, u64) {
        match *self {}
    }

    pub(crate) fn finish_uploads(&self, _max: Duration) {
        match *self {}
    }

    pub(crate) fn upload_grace(&self) -> Duration {
        match *self {}
    }
}

impl Engine {
    pub(crate) fn lookup_shared<R: Recipe>(
        &self,
        _recipe: &R,
        _key: Digest,
        _args_display: &str,
    ) -> Result<Result<FlightValue, Why>, Error> {
        Ok(Err(Why::NoEntry))
    }

    pub(crate) fn claim_shared<R: Recipe>(
        &self,
        _recipe: &R,
        _key: Digest,
        _args_display: &str,
    ) -> Result<Result<FlightValue, Option<Claim>>, Error> {
        Ok(Err(None))
    }

    pub(crate) fn upload(&self, _record: &NewRecord, _claim: Option<Claim>) {}

    pub(crate) fn peek_shared<R: Recipe>(
        &self,
        _recipe: &R,
        _key: Digest,
    ) -> Result<Option<(Residency, Digest)>, Error> {
        Ok(None)
    }
}
