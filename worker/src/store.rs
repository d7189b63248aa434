//! The model store: fetch each file of the model manifest with progress,
//! verify its size and SHA-256, keep it in the Cache API, and read it from
//! there on later visits without a network request. A file that fails
//! verification is deleted and reported, never returned.

use js_sys::Uint8Array;
use sepsis_core::manifest::{Manifest, ModelFile, Verifier, MANIFEST_PATH};
use sepsis_core::protocol::{ErrorKind, EventBody, ModelProgress, ModelSource, ModelVerified, WorkerError};
use wasm_bindgen::{JsCast, JsValue};
use wasm_bindgen_futures::JsFuture;
use web_sys::{Cache, Response, WorkerGlobalScope};

/// Cache API bucket; entries are keyed by file name and digest, so a new
/// manifest digest never matches a stale entry.
const CACHE_NAME: &str = "sepsis-models-v1";
/// Send a progress event at most every this many bytes.
const PROGRESS_STEP: u64 = 2 << 20;

/// A verified model file, ready to be parsed.
pub struct LoadedModel {
    pub file: ModelFile,
    pub bytes: Vec<u8>,
    pub source: ModelSource,
}

pub type StoreResult<T> = Result<T, WorkerError>;

fn failure(kind: ErrorKind, message: impl Into<String>) -> WorkerError {
    WorkerError { kind, message: message.into() }
}

fn js_failure(kind: ErrorKind, context: &str) -> impl Fn(JsValue) -> WorkerError + '_ {
    move |value| {
        let detail = value
            .dyn_ref::<js_sys::Error>()
            .map(|e| String::from(e.message()))
            .or_else(|| value.as_string())
            .unwrap_or_else(|| format!("{value:?}"));
        failure(kind, format!("{context}: {detail}"))
    }
}

fn scope() -> WorkerGlobalScope {
    js_sys::global().unchecked_into()
}

/// The manifest, always fetched fresh (it is small and says what is current).
pub async fn fetch_manifest() -> StoreResult<Manifest> {
    let response = fetch(MANIFEST_PATH, web_sys::RequestCache::NoCache).await?;
    let text = JsFuture::from(response.text().map_err(js_failure(ErrorKind::Network, MANIFEST_PATH))?)
        .await
        .map_err(js_failure(ErrorKind::Network, MANIFEST_PATH))?
        .as_string()
        .unwrap_or_default();
    Manifest::from_json(&text).map_err(|e| failure(ErrorKind::Internal, format!("{MANIFEST_PATH}: {e}")))
}

async fn fetch(url: &str, cache_mode: web_sys::RequestCache) -> StoreResult<Response> {
    let init = web_sys::RequestInit::new();
    init.set_cache(cache_mode);
    let promise = scope().fetch_with_str_and_init(url, &init);
    let response: Response =
        JsFuture::from(promise).await.map_err(js_failure(ErrorKind::Network, url))?.unchecked_into();
    if !response.ok() {
        return Err(failure(ErrorKind::Network, format!("{url}: HTTP {} {}", response.status(), response.status_text())));
    }
    Ok(response)
}

async fn open_cache() -> StoreResult<Cache> {
    let caches = scope().caches().map_err(js_failure(ErrorKind::Internal, "Cache API unavailable"))?;
    let cache = JsFuture::from(caches.open(CACHE_NAME)).await.map_err(js_failure(ErrorKind::Internal, "opening the model cache"))?;
    Ok(cache.unchecked_into())
}

fn cache_key(file: &ModelFile) -> String {
    format!("models/{}?sha256={}", file.name, file.sha256)
}

/// Load one manifest file: from the Cache API if a verified copy is there,
/// otherwise from the network. `emit` receives progress and verification events.
pub async fn load(file: &ModelFile, emit: &dyn Fn(EventBody)) -> StoreResult<LoadedModel> {
    let cache = open_cache().await?;
    let key = cache_key(file);
    if let Some(bytes) = read_cached(&cache, &key).await? {
        emit(progress(file, file.bytes, ModelSource::Cache));
        match file.verify(&bytes) {
            Ok(()) => return Ok(LoadedModel { file: file.clone(), bytes, source: ModelSource::Cache }),
            Err(e) => {
                // A corrupted cache entry is dropped and replaced from the network.
                let _ = JsFuture::from(cache.delete_with_str(&key)).await;
                emit(EventBody::Error(failure(ErrorKind::ModelVerification, format!("cached copy rejected: {e}"))));
            }
        }
    }
    let bytes = download(file, emit).await?;
    let stored = Response::new_with_opt_u8_array(Some(&mut bytes.clone()))
        .map_err(js_failure(ErrorKind::Internal, "preparing the cache entry"))?;
    JsFuture::from(cache.put_with_str(&key, &stored)).await.map_err(js_failure(ErrorKind::Internal, "storing the model in the cache"))?;
    Ok(LoadedModel { file: file.clone(), bytes, source: ModelSource::Network })
}

/// Remove cache entries that the current manifest no longer lists.
pub async fn prune(manifest: &Manifest) -> StoreResult<()> {
    let cache = open_cache().await?;
    let keep: Vec<String> = manifest.files.iter().map(cache_key).collect();
    let keys = JsFuture::from(cache.keys()).await.map_err(js_failure(ErrorKind::Internal, "listing the model cache"))?;
    for request in js_sys::Array::from(&keys).iter() {
        let request: web_sys::Request = request.unchecked_into();
        let url = request.url();
        if !keep.iter().any(|k| url.ends_with(k.as_str())) {
            let _ = JsFuture::from(cache.delete_with_request(&request)).await;
        }
    }
    Ok(())
}

async fn read_cached(cache: &Cache, key: &str) -> StoreResult<Option<Vec<u8>>> {
    let hit = JsFuture::from(cache.match_with_str(key)).await.map_err(js_failure(ErrorKind::Internal, "reading the model cache"))?;
    if hit.is_undefined() {
        return Ok(None);
    }
    let response: Response = hit.unchecked_into();
    let buffer = JsFuture::from(response.array_buffer().map_err(js_failure(ErrorKind::Internal, key))?)
        .await
        .map_err(js_failure(ErrorKind::Internal, key))?;
    Ok(Some(Uint8Array::new(&buffer).to_vec()))
}

/// Stream the file from the network, hashing each chunk as it arrives.
async fn download(file: &ModelFile, emit: &dyn Fn(EventBody)) -> StoreResult<Vec<u8>> {
    let url = format!("models/{}", file.name);
    // no-store: the verified copy lives in the Cache API; the HTTP cache
    // would only hold a second, unverified copy.
    let response = fetch(&url, web_sys::RequestCache::NoStore).await?;
    let body = response.body().ok_or_else(|| failure(ErrorKind::Network, format!("{url}: empty response")))?;
    let reader: web_sys::ReadableStreamDefaultReader = body.get_reader().unchecked_into();
    let mut verifier = Verifier::new(file);
    let mut bytes = Vec::with_capacity(file.bytes as usize);
    let mut reported = 0;
    emit(progress(file, 0, ModelSource::Network));
    loop {
        let chunk = JsFuture::from(reader.read()).await.map_err(js_failure(ErrorKind::Network, &url))?;
        if js_sys::Reflect::get(&chunk, &"done".into()).ok().and_then(|d| d.as_bool()).unwrap_or(true) {
            break;
        }
        let value: Uint8Array = js_sys::Reflect::get(&chunk, &"value".into())
            .map_err(js_failure(ErrorKind::Network, &url))?
            .unchecked_into();
        let start = bytes.len();
        bytes.resize(start + value.length() as usize, 0);
        value.copy_to(&mut bytes[start..]);
        verifier.update(&bytes[start..]);
        if verifier.bytes_seen() - reported >= PROGRESS_STEP {
            reported = verifier.bytes_seen();
            emit(progress(file, reported, ModelSource::Network));
        }
    }
    emit(progress(file, verifier.bytes_seen(), ModelSource::Network));
    verifier.finish().map_err(|e| failure(ErrorKind::ModelVerification, e.to_string()))?;
    Ok(bytes)
}

fn progress(file: &ModelFile, loaded_bytes: u64, source: ModelSource) -> EventBody {
    EventBody::ModelProgress(ModelProgress { file: file.name.clone(), loaded_bytes, total_bytes: file.bytes, source })
}

/// The event announcing a verified file, with what its contents say.
pub fn verified_event(model: &LoadedModel, description: String) -> EventBody {
    EventBody::ModelVerified(ModelVerified {
        file: model.file.name.clone(),
        role: model.file.role.clone(),
        bytes: model.file.bytes,
        sha256: model.file.sha256.clone(),
        source: model.source,
        description,
    })
}
