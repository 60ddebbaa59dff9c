//! google-cloud-auth's `CredentialsProvider` for [`Credentials`] (feature
//! `google-cloud-auth`), so that `google_cloud_auth::credentials::Credentials::from(creds)`
//! plugs a user's sign-in (`token.json`, the consent flow, a Redis store)
//! into every google-cloud-rust client.
//!
//! Headers come with an entity tag that stands for the token they carry:
//! asked again with that tag while the token is unchanged, the answer is
//! `NotModified`; after a refresh it is `New` with a new tag.

use ::google_cloud_auth::credentials::{
    AccessToken as GcpAccessToken, AccessTokenCredentialsProvider, CacheableResource,
    CredentialsProvider, EntityTag,
};
use ::google_cloud_auth::errors::CredentialsError;
use http::{Extensions, HeaderMap};

use crate::credentials::Credentials;
use crate::error::Error;
use crate::headers::Auth;

impl CredentialsProvider for Credentials {
    /// `Authorization: Bearer …` (or `x-goog-api-key`) and, when set,
    /// `x-goog-user-project`, as [`Credentials::headers`]; `NotModified` when
    /// `extensions` holds the entity tag of the same token.
    async fn headers(
        &self,
        extensions: Extensions,
    ) -> Result<CacheableResource<HeaderMap>, CredentialsError> {
        let auth = self.auth().await.map_err(credentials_error)?;
        let entity_tag = self.entity_tag_for(&auth);
        if extensions.get::<EntityTag>() == Some(&entity_tag) {
            return Ok(CacheableResource::NotModified);
        }
        let mut data = HeaderMap::with_capacity(2);
        auth.apply(&mut data, self.quota_project_header());
        Ok(CacheableResource::New { entity_tag, data })
    }

    /// The stored token's universe domain, else the credentials' (the ADC
    /// file's or the metadata server's, else `googleapis.com`).
    async fn universe_domain(&self) -> Option<String> {
        let stored = self.stored_token().and_then(|t| t.universe_domain);
        Some(stored.unwrap_or_else(|| Credentials::universe_domain(self).to_owned()))
    }
}

impl AccessTokenCredentialsProvider for Credentials {
    /// The access token, as [`Credentials::access_token`]; an error for API keys.
    async fn access_token(&self) -> Result<GcpAccessToken, CredentialsError> {
        let token = Credentials::access_token(self)
            .await
            .map_err(credentials_error)?;
        Ok(GcpAccessToken {
            token: token.secret().to_owned(),
        })
    }
}

impl Credentials {
    /// The entity tag for headers made with `auth`: the same one as long as
    /// the token is the same (an API key never changes), a new one after a
    /// refresh. Token generations are unique in the process.
    fn entity_tag_for(&self, auth: &Auth) -> EntityTag {
        let generation = auth.bearer().map_or(0, |token| token.0.generation);
        let mut slot = self
            .entity_tag_slot()
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        match &*slot {
            Some((seen, tag)) if *seen == generation => tag.clone(),
            _ => {
                let tag = EntityTag::new();
                *slot = Some((generation, tag.clone()));
                tag
            }
        }
    }
}

/// Our error as google-cloud-auth's, with its text (which never holds a
/// secret) as the message and the error itself as the source.
fn credentials_error(e: Error) -> CredentialsError {
    CredentialsError::new(e.is_transient(), e.to_string(), e)
}
