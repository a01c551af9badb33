//! API tokens: `Authorization: Bearer <token>` on every API call except health. The store keeps
//! only each token's SHA-256; the user and group it names decide what the caller sees.

use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use mofang_store::{JobRecord, Principal};

use crate::{ControlPlane, Error};

/// The authenticated caller of a request.
#[derive(Debug, Clone)]
pub(crate) struct Caller(pub Principal);

impl Caller {
    /// Admins see everything; others their own jobs and their group's.
    pub(crate) fn may_see(&self, job: &JobRecord) -> bool {
        self.0.admin || job.user == self.0.user || job.group == self.0.group
    }

    pub(crate) fn require_admin(&self, what: &str) -> Result<(), Error> {
        if self.0.admin {
            Ok(())
        } else {
            Err(Error::Forbidden(format!(
                "{what} needs an admin token; user {} is not an admin",
                self.0.user
            )))
        }
    }
}

impl FromRequestParts<ControlPlane> for Caller {
    type Rejection = Error;

    async fn from_request_parts(
        parts: &mut Parts,
        plane: &ControlPlane,
    ) -> Result<Self, Self::Rejection> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .ok_or_else(|| {
                Error::Unauthorized(
                    "missing API token: send `Authorization: Bearer <token>` (create one with `mofang token create`)"
                        .into(),
                )
            })?
            .to_str()
            .map_err(|_| Error::Unauthorized("the Authorization header is not text".into()))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                Error::Unauthorized("the Authorization header must be `Bearer <token>`".into())
            })?;
        match plane.store.authenticate(token).await? {
            Some(principal) => Ok(Caller(principal)),
            None => Err(Error::Unauthorized("unknown API token".into())),
        }
    }
}
