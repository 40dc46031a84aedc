//! Image bytes in an S3-compatible object store: [`S3BlobStore`], a [`BlobStore`] over Apache
//! Arrow's `object_store` client.
//!
//! Configured by `RAP_BLOB_STORE=s3://BUCKET/PREFIX` and the standard `AWS_ENDPOINT_URL`,
//! `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and `AWS_REGION` variables
//! ([`S3Config::with_env`], given the process's environment by the application). Objects are `PREFIX/TENANT/SHA256` (the sha256 of the bytes), so a
//! write is idempotent and the database's `blobs` rows are the reference counts.
//!
//! The store traits are synchronous and `object_store` is async: each call runs on a small
//! tokio runtime owned by the store and is waited for on the calling thread (so it works
//! from any thread, a server's worker threads included).

use futures_util::StreamExt;
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{
    BackoffConfig, ClientOptions, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use rap_core::{Error, Result, Tenant};
use rap_memory::blobs::{is_sha256_hex, BlobStore};
use std::future::Future;
use std::time::Duration;

/// Where the objects are and how to reach them.
#[derive(Clone, Default)]
pub struct S3Config {
    pub bucket: String,
    /// Key prefix without leading or trailing `/` (may be empty).
    pub prefix: String,
    /// `AWS_ENDPOINT_URL`: an S3-compatible server (`http://` allowed); AWS itself when unset.
    pub endpoint: Option<String>,
    /// `AWS_REGION` (default `us-east-1`).
    pub region: Option<String>,
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    pub session_token: Option<String>,
    /// How long one request may take before it counts as unanswered.
    pub timeout: Option<Duration>,
}

impl std::fmt::Debug for S3Config {
    // Never prints the credentials.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3Config")
            .field("bucket", &self.bucket)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .field("region", &self.region)
            .finish_non_exhaustive()
    }
}

impl S3Config {
    /// Parses `s3://BUCKET[/PREFIX]`.
    pub fn parse(url: &str) -> Result<Self> {
        let url = url.trim();
        let Some(rest) = url.strip_prefix("s3://") else {
            return Err(Error::invalid(format!(
                "blob store {url:?} (RAP_BLOB_STORE): give s3://BUCKET/PREFIX"
            )));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        if !bucket_ok {
            return Err(Error::invalid(format!(
                "blob store {url:?} (RAP_BLOB_STORE): {bucket:?} is not an S3 bucket name \
                 (3-63 lowercase letters, digits, '-' or '.')"
            )));
        }
        let prefix = prefix.trim_matches('/').to_owned();
        if prefix.split('/').any(|s| s == "." || s == "..") || prefix.contains("//") {
            return Err(Error::invalid(format!(
                "blob store {url:?} (RAP_BLOB_STORE): the prefix {prefix:?} has an empty, . or .. part"
            )));
        }
        Ok(S3Config {
            bucket: bucket.to_owned(),
            prefix,
            ..Default::default()
        })
    }

    /// Takes the endpoint, region and credentials from `var` (the standard AWS names).
    pub fn with_env(mut self, var: impl Fn(&str) -> Option<String>) -> Self {
        let get = |names: &[&str]| {
            names
                .iter()
                .find_map(|n| var(n).filter(|v| !v.trim().is_empty()))
        };
        self.endpoint = get(&["AWS_ENDPOINT_URL_S3", "AWS_ENDPOINT_URL"]).or(self.endpoint);
        self.region = get(&["AWS_REGION", "AWS_DEFAULT_REGION"]).or(self.region);
        self.access_key_id = get(&["AWS_ACCESS_KEY_ID"]).or(self.access_key_id);
        self.secret_access_key = get(&["AWS_SECRET_ACCESS_KEY"]).or(self.secret_access_key);
        self.session_token = get(&["AWS_SESSION_TOKEN"]).or(self.session_token);
        self
    }

    /// `s3://bucket/prefix`.
    pub fn url(&self) -> String {
        if self.prefix.is_empty() {
            format!("s3://{}", self.bucket)
        } else {
            format!("s3://{}/{}", self.bucket, self.prefix)
        }
    }
}

/// The [`BlobStore`] of an S3 bucket (AWS or any S3-compatible server).
pub struct S3BlobStore {
    config: S3Config,
    client: AmazonS3,
    /// `None` only while dropping.
    runtime: Option<tokio::runtime::Runtime>,
}

/// Installs rustls's `ring` provider as the process default (reqwest is built without one,
/// to keep aws-lc-rs out of the build); another already installed is just as good.
pub(crate) fn install_tls_provider() {
    static INSTALLED: std::sync::Once = std::sync::Once::new();
    INSTALLED.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

impl S3BlobStore {
    /// Builds the client and checks that the bucket answers (it must exist, and the
    /// credentials must be accepted), so a misconfiguration shows at start, not at the first
    /// image.
    pub fn connect(config: S3Config) -> Result<Self> {
        install_tls_provider();
        let timeout = config.timeout.unwrap_or(Duration::from_secs(30));
        let mut options = ClientOptions::new()
            .with_connect_timeout(Duration::from_secs(5))
            .with_timeout(timeout);
        if let Some(endpoint) = &config.endpoint {
            if endpoint.starts_with("http://") {
                options = options.with_allow_http(true);
            }
        }
        let mut builder = AmazonS3Builder::new()
            .with_bucket_name(&config.bucket)
            .with_region(config.region.as_deref().unwrap_or("us-east-1"))
            .with_client_options(options)
            // A few quick retries: an unanswering server is reported in seconds, not minutes.
            .with_retry(RetryConfig {
                backoff: BackoffConfig {
                    init_backoff: Duration::from_millis(100),
                    max_backoff: Duration::from_secs(1),
                    base: 2.0,
                },
                max_retries: 2,
                retry_timeout: Duration::from_secs(10),
            });
        if let Some(endpoint) = &config.endpoint {
            builder = builder.with_endpoint(endpoint);
        }
        if let Some(id) = &config.access_key_id {
            builder = builder.with_access_key_id(id);
        }
        if let Some(secret) = &config.secret_access_key {
            builder = builder.with_secret_access_key(secret);
        }
        if let Some(token) = &config.session_token {
            builder = builder.with_token(token);
        }
        let client = builder
            .build()
            .map_err(|e| Error::invalid(format!("blob store {}: {}", config.url(), chain(&e))))?;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("rap-s3")
            .enable_all()
            .build()
            .map_err(|e| Error::storage(format!("cannot start the S3 client's runtime: {e}")))?;
        let store = S3BlobStore {
            config,
            client,
            runtime: Some(runtime),
        };
        let root = store.root();
        let client = store.client.clone();
        store
            .run(async move { client.list_with_delimiter(root.as_ref()).await })
            .map_err(|e| store.error("cannot list", &store.config.prefix, e))?;
        Ok(store)
    }

    pub fn config(&self) -> &S3Config {
        &self.config
    }

    fn root(&self) -> Option<ObjectPath> {
        (!self.config.prefix.is_empty()).then(|| ObjectPath::from(self.config.prefix.as_str()))
    }

    fn key(&self, tenant: &Tenant, sha256: &str) -> Result<ObjectPath> {
        if !is_sha256_hex(sha256) {
            return Err(Error::invalid(format!(
                "{sha256:?} is not an image id (64 lowercase hex digits)"
            )));
        }
        let key = if self.config.prefix.is_empty() {
            format!("{}/{sha256}", tenant.as_str())
        } else {
            format!("{}/{}/{sha256}", self.config.prefix, tenant.as_str())
        };
        Ok(ObjectPath::from(key))
    }

    /// Runs `fut` on the store's runtime and waits for it on this thread.
    fn run<T: Send + 'static>(&self, fut: impl Future<Output = T> + Send + 'static) -> T {
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        let runtime = self.runtime.as_ref().expect("runtime present until drop");
        runtime.spawn(async move {
            let _ = tx.send(fut.await);
        });
        rx.recv()
            .expect("the S3 runtime runs every task it is given to completion")
    }

    /// An error naming what went wrong: no such bucket, credentials refused, server not
    /// answering, or the client's own message.
    fn error(&self, what: &str, key: &str, e: object_store::Error) -> Error {
        let text = chain(&e);
        let location = self.config.url();
        let server = self
            .config
            .endpoint
            .as_deref()
            .unwrap_or("AWS S3 (AWS_ENDPOINT_URL unset)");
        if text.contains("NoSuchBucket") {
            return Error::storage(format!(
                "blob store {location}: the bucket {:?} does not exist on {server}",
                self.config.bucket
            ));
        }
        let refused = matches!(
            e,
            object_store::Error::PermissionDenied { .. }
                | object_store::Error::Unauthenticated { .. }
        ) || [
            "InvalidAccessKeyId",
            "SignatureDoesNotMatch",
            "AccessDenied",
            "403 Forbidden",
        ]
        .iter()
        .any(|s| text.contains(s));
        if refused {
            return Error::storage(format!(
                "blob store {location}: {server} refused the credentials (AWS_ACCESS_KEY_ID / \
                 AWS_SECRET_ACCESS_KEY) to {what} {key}: {text}"
            ));
        }
        let unanswered = [
            "error sending request",
            "Connection refused",
            "connection refused",
            "timed out",
            "dns error",
            "connection closed",
        ]
        .iter()
        .any(|s| text.contains(s));
        if unanswered {
            return Error::storage(format!(
                "blob store {location}: the S3 server {server} is not answering ({what} {key}): {text}"
            ));
        }
        Error::storage(format!("blob store {location}: {what} {key}: {text}"))
    }
}

/// An error with its sources, one after the other.
fn chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let s_text = s.to_string();
        if !text.contains(&s_text) {
            text.push_str(": ");
            text.push_str(&s_text);
        }
        source = s.source();
    }
    text
}

impl Drop for S3BlobStore {
    fn drop(&mut self) {
        // Dropping a runtime blocks, which tokio forbids inside async code; this does not.
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
    }
}

impl BlobStore for S3BlobStore {
    fn location(&self) -> String {
        self.config.url()
    }

    fn put(&self, tenant: &Tenant, sha256: &str, bytes: &[u8]) -> Result<()> {
        let key = self.key(tenant, sha256)?;
        let client = self.client.clone();
        let payload = PutPayload::from(bytes.to_vec());
        let path = key.clone();
        self.run(async move { client.put(&path, payload).await })
            .map(|_| ())
            .map_err(|e| self.error("cannot write", key.as_ref(), e))
    }

    fn get(&self, tenant: &Tenant, sha256: &str) -> Result<Vec<u8>> {
        let key = self.key(tenant, sha256)?;
        let client = self.client.clone();
        let path = key.clone();
        match self.run(async move { client.get(&path).await?.bytes().await }) {
            Ok(bytes) => Ok(bytes.to_vec()),
            Err(object_store::Error::NotFound { .. }) => Err(Error::storage(format!(
                "blob store {}: the object {key} of image {sha256} is missing",
                self.config.url()
            ))),
            Err(e) => Err(self.error("cannot read", key.as_ref(), e)),
        }
    }

    fn delete(&self, tenant: &Tenant, sha256: &str) -> Result<()> {
        let key = self.key(tenant, sha256)?;
        let client = self.client.clone();
        let path = key.clone();
        match self.run(async move { client.delete(&path).await }) {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(self.error("cannot delete", key.as_ref(), e)),
        }
    }

    fn list(&self) -> Result<Vec<(Tenant, String)>> {
        let client = self.client.clone();
        let root = self.root();
        let metas = self
            .run(async move {
                let mut out = Vec::new();
                let mut stream = client.list(root.as_ref());
                while let Some(meta) = stream.next().await {
                    out.push(meta?.location);
                }
                Ok::<_, object_store::Error>(out)
            })
            .map_err(|e| self.error("cannot list", &self.config.prefix, e))?;
        let skip = if self.config.prefix.is_empty() {
            0
        } else {
            self.config.prefix.split('/').count()
        };
        Ok(metas
            .iter()
            .filter_map(|path| {
                let parts: Vec<_> = path.parts().skip(skip).collect();
                match parts.as_slice() {
                    [tenant, sha] if is_sha256_hex(sha.as_ref()) => {
                        Some((Tenant::new(tenant.as_ref()).ok()?, sha.as_ref().to_owned()))
                    }
                    _ => None,
                }
            })
            .collect())
    }
}

/// Opens the blob store a `RAP_BLOB_STORE` value names (only `s3://` for now), with the
/// endpoint, region and credentials that `var` gives under the standard AWS names (the
/// application passes the process's environment).
pub fn open_blob_store(
    url: &str,
    var: impl Fn(&str) -> Option<String>,
) -> Result<std::sync::Arc<dyn BlobStore>> {
    Ok(std::sync::Arc::new(S3BlobStore::connect(
        S3Config::parse(url)?.with_env(var),
    )?))
}
