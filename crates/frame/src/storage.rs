//! Object storage: DataFrames read from and write to `s3://`, `gs://`, `az://` and
//! `http(s)://` URLs through the `object_store` crate, the one DataFusion reads with.
//!
//! Every rank (and every worker of a driver's cluster) keeps its own registry of stores,
//! [`Stores`]: the first query that names a bucket builds its store from
//! [`StorageOptions`] and the environment, as `s3fs` and `gcsfs` do for Dask and
//! pandas:
//!
//! - **S3 and compatible stores** (`s3://bucket/key`): the options, then `AWS_*`
//!   variables (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//!   `AWS_REGION`, `AWS_ENDPOINT_URL`, …), then the profile (`AWS_PROFILE`, else
//!   `default`) of `~/.aws/credentials` and `~/.aws/config`, then the instance's role.
//!   [`StorageOptions::anonymous`] sends requests unsigned, for public buckets
//!   (`storage_options=dict(anon=True)`).
//! - **Google Cloud Storage** (`gs://bucket/key`): `GOOGLE_*` variables and the service
//!   account file they name.
//! - **Azure Blob Storage** (`az://container/key`): `AZURE_*` variables.
//! - **HTTP** (`https://host/path`): plain GETs, with byte ranges.
//!
//! Reads go by byte range, as from local files: each rank fetches only the ranges of its
//! CSV partitions and the row groups of its Parquet partitions. A request that fails with
//! a server error (5xx), throttling (429) or a broken connection is retried with
//! exponential backoff, up to [`StorageOptions::max_retries`] times and
//! [`StorageOptions::retry_timeout`]; then the query fails with an error that names the
//! URL and the last status.
//!
//! **Objects are pinned by their ETag.** The ETag a query's planning sees for an object
//! (listing it, or asking for its size) is sent as `If-Match` with every read of it, so an object replaced
//! while a query runs fails the query ("changed after the query was planned") instead
//! of mixing two versions' rows; the ranks also check that they planned with the same
//! versions.

use std::collections::HashMap;
use std::fmt;
use std::ops::Range;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::datasource::listing::ListingTableUrl;
use datafusion::execution::context::DataFilePaths;
use datafusion::execution::object_store::{DefaultObjectStoreRegistry, ObjectStoreRegistry};
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use object_store::path::Path;
use object_store::{
    BackoffConfig, ClientOptions, CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
    ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, RetryConfig,
};
use serde::{Deserialize, Serialize};
use url::Url;

type DfResult<T> = datafusion::common::Result<T>;

/// How queries reach object storage, fsspec's `storage_options` for chorus: credentials
/// (else looked up in the environment, the provider's files, the instance role), an
/// endpoint and region for S3-compatible stores, and how long to retry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StorageOptions {
    /// Send requests unsigned, without looking for credentials: for public buckets.
    pub anonymous: bool,
    /// The access key id (S3) or account name (Azure); `None`: from the environment
    /// or the credentials file.
    pub key: Option<String>,
    /// The secret access key (S3) or account key (Azure).
    pub secret: Option<String>,
    /// A session token, with temporary credentials.
    pub token: Option<String>,
    /// The endpoint of an S3-compatible store (MinIO, Ceph, moto, R2, …), such as
    /// `http://127.0.0.1:9000`; `None`: `AWS_ENDPOINT_URL`, the profile's
    /// `endpoint_url`, else AWS.
    pub endpoint: Option<String>,
    /// The region; `None`: `AWS_REGION`, the profile's, else `us-east-1`.
    pub region: Option<String>,
    /// Retries of a request that failed with a server error, throttling or a broken
    /// connection, with exponential backoff from 100 ms (default 5).
    pub max_retries: usize,
    /// How long a request may be retried at most (default 60 s).
    pub retry_timeout: Duration,
}

impl Default for StorageOptions {
    fn default() -> Self {
        StorageOptions {
            anonymous: false,
            key: None,
            secret: None,
            token: None,
            endpoint: None,
            region: None,
            max_retries: 5,
            retry_timeout: Duration::from_secs(60),
        }
    }
}

/// The URL schemes queries can read and write besides local paths.
const SCHEMES: [&str; 8] = ["s3", "s3a", "gs", "az", "abfs", "abfss", "http", "https"];

/// Whether `path` is an object storage URL (`s3://…`, `gs://…`, `az://…`, `http(s)://…`)
/// rather than a local path.
pub fn is_url(path: &str) -> bool {
    path.split_once("://").is_some_and(|(scheme, _)| SCHEMES.contains(&scheme.to_ascii_lowercase().as_str()))
}

/// Paths as DataFusion's listing tables take them, with globs in URLs too
/// (`s3://bucket/purchases/*.csv`): DataFusion splits a glob off local paths only.
pub(crate) struct Listing(pub(crate) Vec<String>);

impl DataFilePaths for Listing {
    fn to_urls(self) -> DfResult<Vec<ListingTableUrl>> {
        self.0.iter().map(|p| listing_url(p)).collect()
    }
}

fn listing_url(path: &str) -> DfResult<ListingTableUrl> {
    if is_url(path) {
        if let Some(first) = path.find(['*', '?', '[']) {
            let cut = path[..first].rfind('/').map_or(0, |slash| slash + 1);
            return ListingTableUrl::parse(&path[..cut])?.with_glob(&path[cut..]);
        }
    }
    ListingTableUrl::parse(path)
}

/// The stores of one rank: DataFusion's object store registry, which builds the store of
/// a bucket the first time a query names it.
#[derive(Debug)]
pub(crate) struct Stores {
    options: StorageOptions,
    local: DefaultObjectStoreRegistry,
    /// By `scheme://bucket`.
    stores: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
}

impl Stores {
    pub(crate) fn new(options: StorageOptions) -> Stores {
        Stores { options, local: DefaultObjectStoreRegistry::new(), stores: Mutex::default() }
    }

    /// The store of `url`, built from the options and the environment.
    fn build(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        let o = &self.options;
        let retry = RetryConfig { backoff: BackoffConfig::default(), max_retries: o.max_retries, retry_timeout: o.retry_timeout };
        let bucket = url.host_str().unwrap_or_default();
        let failed = |e: object_store::Error| {
            datafusion::error::DataFusionError::Configuration(format!("cannot reach {}: {e}", key_of(url)))
        };
        let store: Arc<dyn ObjectStore> = match url.scheme() {
            "s3" | "s3a" => {
                let mut b = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket).with_retry(retry);
                let profile = AwsProfile::load();
                let endpoint = o.endpoint.clone().or_else(|| std::env::var("AWS_ENDPOINT_URL").ok()).or(profile.endpoint);
                if let Some(endpoint) = endpoint {
                    b = b.with_allow_http(endpoint.starts_with("http://")).with_endpoint(endpoint);
                }
                let region = o.region.clone().or_else(|| std::env::var("AWS_REGION").ok()).or_else(|| std::env::var("AWS_DEFAULT_REGION").ok());
                if let Some(region) = region.or(profile.region) {
                    b = b.with_region(region);
                }
                // Keys: the options', else the environment's (from_env), else the profile's.
                let keys = match (&o.key, &o.secret) {
                    (Some(key), Some(secret)) => Some((key.clone(), secret.clone(), o.token.clone())),
                    _ if std::env::var_os("AWS_ACCESS_KEY_ID").is_none() => {
                        profile.key.zip(profile.secret).map(|(key, secret)| (key, secret, profile.token))
                    }
                    _ => None,
                };
                if o.anonymous {
                    b = b.with_skip_signature(true);
                } else if let Some((key, secret, token)) = keys {
                    b = b.with_access_key_id(key).with_secret_access_key(secret);
                    if let Some(token) = token {
                        b = b.with_token(token);
                    }
                }
                Arc::new(b.build().map_err(failed)?)
            }
            "gs" => {
                let b = object_store::gcp::GoogleCloudStorageBuilder::from_env()
                    .with_bucket_name(bucket)
                    .with_retry(retry)
                    .with_skip_signature(o.anonymous);
                Arc::new(b.build().map_err(failed)?)
            }
            "az" | "abfs" | "abfss" => {
                let mut b = object_store::azure::MicrosoftAzureBuilder::from_env()
                    .with_url(url.as_str())
                    .with_retry(retry)
                    .with_skip_signature(o.anonymous);
                if let Some(account) = &o.key {
                    b = b.with_account(account);
                }
                if let Some(key) = &o.secret {
                    b = b.with_access_key(key);
                }
                Arc::new(b.build().map_err(failed)?)
            }
            "http" | "https" => {
                let b = object_store::http::HttpBuilder::new()
                    .with_url(key_of(url))
                    .with_retry(retry)
                    .with_client_options(ClientOptions::new().with_allow_http(url.scheme() == "http"));
                Arc::new(b.build().map_err(failed)?)
            }
            other => {
                return Err(datafusion::error::DataFusionError::Configuration(format!(
                    "{url}: chorus reads local paths and s3://, gs://, az:// and http(s):// URLs, not {other}://"
                )))
            }
        };
        Ok(Arc::new(Pinned { base: key_of(url), inner: store, tags: Arc::default() }))
    }
}

/// `scheme://host[:port]`: what a store serves.
fn key_of(url: &Url) -> String {
    format!("{}://{}", url.scheme(), &url[url::Position::BeforeHost..url::Position::AfterPort])
}

impl ObjectStoreRegistry for Stores {
    fn register_store(&self, url: &Url, store: Arc<dyn ObjectStore>) -> Option<Arc<dyn ObjectStore>> {
        if url.scheme() == "file" {
            return self.local.register_store(url, store);
        }
        self.stores.lock().expect("stores lock").insert(key_of(url), store)
    }

    fn deregister_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if url.scheme() == "file" {
            return self.local.deregister_store(url);
        }
        self.stores.lock().expect("stores lock").remove(&key_of(url)).ok_or_else(|| {
            datafusion::error::DataFusionError::Configuration(format!("no object store is registered for {}", key_of(url)))
        })
    }

    fn get_store(&self, url: &Url) -> DfResult<Arc<dyn ObjectStore>> {
        if url.scheme() == "file" {
            return self.local.get_store(url);
        }
        let key = key_of(url);
        if let Some(store) = self.stores.lock().expect("stores lock").get(&key) {
            return Ok(Arc::clone(store));
        }
        // Built outside the lock: building may read credential files.
        let store = self.build(url)?;
        Ok(Arc::clone(self.stores.lock().expect("stores lock").entry(key).or_insert(store)))
    }
}

/// What the AWS profile files say: `~/.aws/credentials` (or
/// `AWS_SHARED_CREDENTIALS_FILE`) and `~/.aws/config` (or `AWS_CONFIG_FILE`), in the
/// section of `AWS_PROFILE` (default `default`).
#[derive(Debug, Default, PartialEq, Eq)]
struct AwsProfile {
    key: Option<String>,
    secret: Option<String>,
    token: Option<String>,
    region: Option<String>,
    endpoint: Option<String>,
}

impl AwsProfile {
    fn load() -> AwsProfile {
        let home = std::env::var_os("HOME").map(std::path::PathBuf::from);
        let file = |var: &str, name: &str| {
            std::env::var_os(var).map(std::path::PathBuf::from).or_else(|| home.as_ref().map(|h| h.join(".aws").join(name)))
        };
        let read = |p: Option<std::path::PathBuf>| p.and_then(|p| std::fs::read_to_string(p).ok()).unwrap_or_default();
        let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
        AwsProfile::parse(&read(file("AWS_SHARED_CREDENTIALS_FILE", "credentials")), &read(file("AWS_CONFIG_FILE", "config")), &profile)
    }

    /// The profile's values: in the credentials file its section is `[name]`, in the
    /// config file `[profile name]` (or `[default]`).
    fn parse(credentials: &str, config: &str, profile: &str) -> AwsProfile {
        let creds = ini_section(credentials, profile);
        let conf = if profile == "default" { ini_section(config, "default") } else { ini_section(config, &format!("profile {profile}")) };
        let get = |key: &str| creds.get(key).or_else(|| conf.get(key)).cloned();
        AwsProfile {
            key: get("aws_access_key_id"),
            secret: get("aws_secret_access_key"),
            token: get("aws_session_token"),
            region: conf.get("region").cloned(),
            endpoint: conf.get("endpoint_url").cloned(),
        }
    }
}

/// The `key = value` lines of section `[name]` of an INI file.
fn ini_section(text: &str, name: &str) -> HashMap<String, String> {
    let mut inside = false;
    let mut values = HashMap::new();
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            inside = section.trim() == name;
        } else if inside {
            if let Some((k, v)) = line.split_once('=') {
                values.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
    }
    values
}

/// A store whose reads are pinned to the ETag first seen for each object (see the
/// [module documentation](self)), and whose errors name the object's URL.
#[derive(Debug)]
struct Pinned {
    /// `scheme://bucket`.
    base: String,
    inner: Arc<dyn ObjectStore>,
    tags: Arc<Mutex<HashMap<Path, String>>>,
}

impl fmt::Display for Pinned {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} (reads pinned by ETag)", self.inner)
    }
}

impl Pinned {
    fn url(&self, path: &Path) -> String {
        format!("{}/{path}", self.base)
    }

    fn unpin(&self, path: &Path) {
        self.tags.lock().expect("pins lock").remove(path);
    }
}

/// Records the ETag of a listed or read object. A weak ETag (`W/"…"`, from some HTTP
/// servers) is not kept: `If-Match` compares strongly, so it would never match.
fn pin(tags: &Mutex<HashMap<Path, String>>, meta: &ObjectMeta) {
    if let Some(tag) = meta.e_tag.as_ref().filter(|t| !t.starts_with("W/")) {
        tags.lock().expect("pins lock").insert(meta.location.clone(), tag.clone());
    }
}

/// `e` with the object's URL in place of its path within the bucket, of the same kind.
fn named(base: &str, path: &Path, e: object_store::Error) -> object_store::Error {
    use object_store::Error as E;
    let url = format!("{base}/{path}");
    match e {
        E::NotFound { source, .. } => E::NotFound { path: url, source },
        E::PermissionDenied { source, .. } => E::PermissionDenied { path: url, source },
        E::Unauthenticated { source, .. } => E::Unauthenticated { path: url, source },
        E::Precondition { source, .. } => E::Precondition { path: url, source },
        E::AlreadyExists { source, .. } => E::AlreadyExists { path: url, source },
        E::Generic { store, source } => E::Generic { store, source: format!("{url}: {source}").into() },
        other => other,
    }
}

#[async_trait]
impl ObjectStore for Pinned {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> object_store::Result<PutResult> {
        self.unpin(location);
        let result = self.inner.put_opts(location, payload, opts).await.map_err(|e| named(&self.base, location, e))?;
        if let Some(tag) = &result.e_tag {
            self.tags.lock().expect("pins lock").insert(location.clone(), tag.clone());
        }
        Ok(result)
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> object_store::Result<Box<dyn MultipartUpload>> {
        self.unpin(location);
        self.inner.put_multipart_opts(location, opts).await.map_err(|e| named(&self.base, location, e))
    }

    async fn get_opts(&self, location: &Path, mut options: GetOptions) -> object_store::Result<GetResult> {
        if options.head {
            // What planning asks of a single object: its current version, pinned anew.
            let result = self.inner.get_opts(location, options).await.map_err(|e| named(&self.base, location, e))?;
            pin(&self.tags, &result.meta);
            return Ok(result);
        }
        let pinned = self.tags.lock().expect("pins lock").get(location).cloned();
        let caller_chose = options.if_match.is_some() || options.if_none_match.is_some() || options.version.is_some();
        if !caller_chose {
            options.if_match.clone_from(&pinned);
        }
        match self.inner.get_opts(location, options).await {
            Ok(result) => {
                if pinned.is_none() {
                    pin(&self.tags, &result.meta);
                }
                Ok(result)
            }
            Err(object_store::Error::Precondition { .. }) if !caller_chose && pinned.is_some() => Err(object_store::Error::Precondition {
                path: self.url(location),
                source: format!(
                    "it changed after the query was planned (its ETag was {}); no rows of the new version were read: run the query again",
                    pinned.unwrap_or_default()
                )
                .into(),
            }),
            Err(e) => Err(named(&self.base, location, e)),
        }
    }

    async fn get_ranges(&self, location: &Path, ranges: &[Range<u64>]) -> object_store::Result<Vec<bytes::Bytes>> {
        object_store::coalesce_ranges(
            ranges,
            |range| async move {
                let options = GetOptions { range: Some(range.into()), ..GetOptions::default() };
                self.get_opts(location, options).await?.bytes().await
            },
            object_store::OBJECT_STORE_COALESCE_DEFAULT,
        )
        .await
    }

    fn delete_stream(&self, locations: BoxStream<'static, object_store::Result<Path>>) -> BoxStream<'static, object_store::Result<Path>> {
        let tags = Arc::clone(&self.tags);
        self.inner
            .delete_stream(locations)
            .inspect(move |deleted| {
                if let Ok(path) = deleted {
                    tags.lock().expect("pins lock").remove(path);
                }
            })
            .boxed()
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (tags, base, at) = (Arc::clone(&self.tags), self.base.clone(), prefix.cloned().unwrap_or_default());
        self.inner
            .list(prefix)
            .map(move |meta| {
                let meta = meta.map_err(|e| named(&base, &at, e))?;
                pin(&tags, &meta);
                Ok(meta)
            })
            .boxed()
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, object_store::Result<ObjectMeta>> {
        let (tags, base, at) = (Arc::clone(&self.tags), self.base.clone(), prefix.cloned().unwrap_or_default());
        self.inner
            .list_with_offset(prefix, offset)
            .map(move |meta| {
                let meta = meta.map_err(|e| named(&base, &at, e))?;
                pin(&tags, &meta);
                Ok(meta)
            })
            .boxed()
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> object_store::Result<ListResult> {
        let at = prefix.cloned().unwrap_or_default();
        let listed = self.inner.list_with_delimiter(prefix).await.map_err(|e| named(&self.base, &at, e))?;
        for meta in &listed.objects {
            pin(&self.tags, meta);
        }
        Ok(listed)
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> object_store::Result<()> {
        self.unpin(to);
        self.inner.copy_opts(from, to, options).await.map_err(|e| named(&self.base, from, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use object_store::memory::InMemory;
    use object_store::ObjectStoreExt;

    fn pinned() -> Pinned {
        Pinned { base: "s3://bucket".into(), inner: Arc::new(InMemory::new()), tags: Arc::default() }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().build().expect("a runtime").block_on(f)
    }

    #[test]
    fn an_object_replaced_after_it_was_listed_fails_its_reads_naming_the_url() {
        block_on(async {
            let store = pinned();
            let path = Path::from("data/part-0.csv");
            store.inner.put(&path, PutPayload::from_static(b"a\n1\n")).await.unwrap();
            let listed: Vec<_> = store.list(Some(&Path::from("data"))).collect().await;
            assert_eq!(listed.len(), 1);
            // Read as listed: fine.
            assert_eq!(store.get_range(&path, 0..2).await.unwrap().as_ref(), b"a\n");
            // Replaced behind the query's back (by another writer).
            store.inner.put(&path, PutPayload::from_static(b"a\n2\n3\n")).await.unwrap();
            let e = store.get_range(&path, 2..4).await.unwrap_err();
            let object_store::Error::Precondition { path: url, source } = &e else { panic!("a precondition failure: {e}") };
            assert_eq!(url, "s3://bucket/data/part-0.csv");
            assert!(source.to_string().contains("changed after the query was planned"), "{e}");
            // Listed again (a new query plans): the new version reads.
            let _: Vec<_> = store.list(Some(&Path::from("data"))).collect().await;
            assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"a\n2\n3\n");
        });
    }

    #[test]
    fn writes_through_the_store_move_the_pin_and_errors_name_the_url() {
        block_on(async {
            let store = pinned();
            let path = Path::from("out/part-0.parquet");
            store.put(&path, PutPayload::from_static(b"one")).await.unwrap();
            store.put(&path, PutPayload::from_static(b"two")).await.unwrap();
            assert_eq!(store.get(&path).await.unwrap().bytes().await.unwrap().as_ref(), b"two");
            let e = store.get(&Path::from("missing.csv")).await.unwrap_err();
            assert!(matches!(&e, object_store::Error::NotFound { path, .. } if path == "s3://bucket/missing.csv"), "{e}");
        });
    }

    #[test]
    fn weak_etags_are_not_pinned_since_if_match_never_matches_them() {
        let tags = Mutex::default();
        let meta = |tag: &str| ObjectMeta {
            location: Path::from(format!("p-{tag}.csv")),
            last_modified: Default::default(),
            size: 1,
            e_tag: Some(tag.into()),
            version: None,
        };
        pin(&tags, &meta("W/\"abc\""));
        pin(&tags, &meta("\"def\""));
        let tags = tags.into_inner().unwrap();
        assert_eq!(tags.len(), 1);
        assert_eq!(tags.values().next().map(String::as_str), Some("\"def\""));
    }

    #[test]
    fn the_profile_comes_from_the_credentials_and_config_files() {
        let credentials = "[default]\naws_access_key_id = AKIADEFAULT\naws_secret_access_key = s1\n\n[work]\naws_access_key_id=AKIAWORK\naws_secret_access_key=s2\naws_session_token = t2\n";
        let config = "[default]\nregion = eu-west-1\n# a comment\n[profile work]\nregion=us-west-2\nendpoint_url = http://127.0.0.1:9000\n";
        let default = AwsProfile::parse(credentials, config, "default");
        assert_eq!(default.key.as_deref(), Some("AKIADEFAULT"));
        assert_eq!(default.region.as_deref(), Some("eu-west-1"));
        assert_eq!(default.endpoint, None);
        let work = AwsProfile::parse(credentials, config, "work");
        assert_eq!(
            work,
            AwsProfile {
                key: Some("AKIAWORK".into()),
                secret: Some("s2".into()),
                token: Some("t2".into()),
                region: Some("us-west-2".into()),
                endpoint: Some("http://127.0.0.1:9000".into()),
            }
        );
        assert_eq!(AwsProfile::parse("", "", "none"), AwsProfile::default());
    }

    #[test]
    fn a_glob_in_a_url_lists_its_prefix_and_matches_the_rest() {
        let url = listing_url("s3://bucket/purchases/*.csv").unwrap();
        assert_eq!(url.as_str(), "s3://bucket/purchases/");
        assert!(url.get_glob().as_ref().is_some_and(|g| g.matches("part-0.csv") && !g.matches("part-0.parquet")));
        let plain = listing_url("s3://bucket/purchases/part-0.csv").unwrap();
        assert_eq!((plain.as_str(), plain.get_glob().is_none()), ("s3://bucket/purchases/part-0.csv", true));
    }

    #[test]
    fn urls_are_told_from_local_paths() {
        for url in ["s3://b/k.csv", "S3://b/", "gs://b/x", "az://c/x", "https://host/x.parquet", "http://127.0.0.1:9/x"] {
            assert!(is_url(url), "{url}");
        }
        for path in ["data/x.csv", "/tmp/x", "C:\\x", "file.csv", "ftp://host/x"] {
            assert!(!is_url(path), "{path}");
        }
    }
}
