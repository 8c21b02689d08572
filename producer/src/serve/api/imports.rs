//! Import routes: the list, one import's progress (cached), and the CSV upload.

use super::*;
use crate::serve::{MIN_UPLOAD_BYTES, UPLOAD_RATE_WINDOW};

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ImportsQuery {
    /// How many of the newest imports (1..=50, default 10).
    #[param(minimum = 1, maximum = 50)]
    pub limit: Option<u32>,
}

/// One import's progress with its rejects by reason.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportDetail {
    #[serde(flatten)]
    pub status: ImportStatus,
    pub rejected_by_reason: BTreeMap<String, i64>,
}

/// The newest imports' progress, as `producer status IMPORT --json` (`import`) each.
#[utoipa::path(get, path = "/api/imports", tag = "imports", params(ImportsQuery),
    responses((status = 200, body = Vec<ImportStatus>), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn imports_list(
    State(state): State<AppState>,
    q: QueryResult<ImportsQuery>,
) -> Result<Response, ApiError> {
    let limit = query(q)?.limit.unwrap_or(10);
    if !(1..=NEWEST_IMPORTS).contains(&limit) {
        return Err(ApiError::bad_request("limit must be within 1 and 50"));
    }
    let key = format!("imports?limit={limit}");
    state
        .readings()
        .answer(key, async {
            let newest = newest_imports(&state).await?;
            Ok(newest[..newest.len().min(limit as usize)].to_vec())
        })
        .await
}

/// The [`NEWEST_IMPORTS`] newest imports' readings, taken once at a time and reused for
/// [`IMPORT_FRESH`]: every `limit` of the list is a slice of this one reading, so clients
/// asking for different limits do not read the same imports again.
pub type NewestImports = tokio::sync::Mutex<Option<(std::time::Instant, Arc<Vec<ImportStatus>>)>>;

/// The largest `limit` of `GET /api/imports`.
pub const NEWEST_IMPORTS: u32 = 50;

async fn newest_imports(state: &AppState) -> Result<Arc<Vec<ImportStatus>>, ApiError> {
    let mut newest = state.0.newest_imports.lock().await;
    if let Some((at, list)) = newest.as_ref() {
        if at.elapsed() < IMPORT_FRESH {
            return Ok(list.clone());
        }
    }
    let rows = oms_shared::store::lookup::recent_imports(&state.0.db, NEWEST_IMPORTS)
        .await
        .map_err(anyhow::Error::from)?;
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        out.push(import_reading(state, row.id).await?.status);
    }
    let list = Arc::new(out);
    *newest = Some((std::time::Instant::now(), list.clone()));
    Ok(list)
}

/// How long an import reading is reused: a running import's figures are read from MySQL at
/// most once per this interval whatever the number of clients (the dashboard polls every
/// 2 s), a finished one's for [`IMPORT_DONE_FRESH`] (only a dead-letter retry changes it).
pub const IMPORT_FRESH: std::time::Duration = std::time::Duration::from_secs(1);
pub const IMPORT_DONE_FRESH: std::time::Duration = std::time::Duration::from_secs(60);
/// How long a running import's rejects by reason are reused (a finished import's are kept:
/// they cannot change). Counting them reads every reject of the import.
pub const REJECTS_FRESH: std::time::Duration = std::time::Duration::from_secs(10);
/// Readings kept at most (the cache is emptied when it grows past this).
const IMPORT_CACHE_MAX: usize = 1_000;

/// An import reading and when it was taken.
#[derive(Debug, Clone)]
pub struct CachedImport {
    at: std::time::Instant,
    status: ImportStatus,
    /// Rejects by reason, when they were counted and whether the import had finished then
    /// (they are final).
    rejects: Option<(std::time::Instant, bool, BTreeMap<String, i64>)>,
}

/// One import's progress, as `producer status IMPORT` computes it, reused for a moment.
async fn import_reading(state: &AppState, id: u64) -> Result<CachedImport, ApiError> {
    let previous = {
        let cache = state.0.import_cache.lock().expect("import cache lock");
        cache.get(&id).cloned()
    };
    if let Some(c) = &previous {
        let fresh = if c.status.done {
            IMPORT_DONE_FRESH
        } else {
            IMPORT_FRESH
        };
        if c.at.elapsed() < fresh {
            return Ok(c.clone());
        }
    }
    let status = status_source(state).import(id, None).await?;
    let reading = CachedImport {
        at: std::time::Instant::now(),
        status,
        rejects: previous.and_then(|p| p.rejects),
    };
    remember(state, id, &reading);
    Ok(reading)
}

fn remember(state: &AppState, id: u64, reading: &CachedImport) {
    let mut cache = state.0.import_cache.lock().expect("import cache lock");
    if cache.len() >= IMPORT_CACHE_MAX && !cache.contains_key(&id) {
        cache.clear();
    }
    cache.insert(id, reading.clone());
}

/// One import's progress, as `producer status IMPORT --json` (`import`), with its rejects
/// by reason. Its rejects are counted at most every [`REJECTS_FRESH`] while it runs and
/// once after it finished.
#[utoipa::path(get, path = "/api/imports/{id}", tag = "imports",
    params(("id" = u64, Path, description = "import id")),
    responses((status = 200, body = ImportDetail), (status = 400, body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody), (status = 429, body = ErrorBody)))]
pub async fn import_one(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let id: u64 = id
        .parse()
        .map_err(|_| ApiError::bad_request(format!("{:?} is not an import id", visible(&id))))?;
    state
        .readings()
        .answer_for(format!("imports/{id}"), async {
            let mut reading = import_reading(&state, id).await?;
            let finished = reading.status.finished_at.is_some();
            let rejects = match &reading.rejects {
                Some((at, last, r)) if *last || at.elapsed() < REJECTS_FRESH => r.clone(),
                _ => {
                    let counted: BTreeMap<String, i64> =
                        oms_shared::store::imports::rejects_by_reason(&state.0.db, id)
                            .await
                            .map_err(anyhow::Error::from)?
                            .into_iter()
                            .collect();
                    reading.rejects = Some((std::time::Instant::now(), finished, counted.clone()));
                    remember(&state, id, &reading);
                    counted
                }
            };
            let fresh = if reading.status.done {
                IMPORT_DONE_FRESH
            } else {
                IMPORT_FRESH
            };
            Ok((
                ImportDetail {
                    status: reading.status,
                    rejected_by_reason: rejects,
                },
                fresh,
            ))
        })
        .await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UploadQuery {
    /// The file's name, recorded in the import (letters, digits, `.-_`; default upload.csv).
    #[param(pattern = r"^[A-Za-z0-9_-][A-Za-z0-9._-]{0,99}$")]
    pub name: Option<String>,
    /// Rows per stream entry (1..=10000, default 100).
    #[param(minimum = 1, maximum = 10000)]
    pub chunk_size: Option<u64>,
    /// Pause while more than this many rows wait unread (default 1000000; 0: no limit;
    /// at most 1000000000).
    #[param(minimum = 0, maximum = 1_000_000_000)]
    pub max_lag: Option<u64>,
    /// Import rows already imported from the same file again, as new orders.
    pub new: Option<bool>,
    /// Answer when the whole file is enqueued, with the report of `producer import --json`.
    pub wait: Option<bool>,
}

/// The 202 answer of an upload.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct UploadAccepted {
    pub import_id: u64,
    /// Where to follow it.
    pub status_url: String,
}

/// A file name safe to use in a temp directory.
pub fn upload_name(name: Option<&str>) -> Result<String, ApiError> {
    let name = name.unwrap_or("upload.csv");
    let ok = !name.is_empty()
        && name.len() <= 100
        && !name.starts_with('.')
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    ok.then(|| name.to_string()).ok_or_else(|| {
        ApiError::bad_request(
            "name: 1 to 100 letters, digits, '.', '-' or '_', not starting with '.'",
        )
    })
}

/// Upload a CSV of orders (the request body, streamed to a temp file within the upload
/// bound) and import it like `producer import`: same validation, rejects, idempotency and
/// backpressure. Answers 202 with the import id once the import exists; with `wait=true`,
/// 200 with `producer import --json`'s report once the file is enqueued. A file whose
/// header is wrong is refused (400 `bad_csv`) before anything is enqueued.
#[utoipa::path(post, path = "/api/imports", tag = "imports", params(UploadQuery),
    request_body(content = String, content_type = "text/csv"),
    responses((status = 202, body = UploadAccepted), (status = 200, description = "with wait=true: the import report", body = Object),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 413, body = ErrorBody), (status = 429, body = ErrorBody)),
    security(("bearer" = [])))]
// Long on purpose: the upload's checks (token, size, rate, spool) and its hand-off to
// the importer, in the order a request meets them.
pub async fn import_upload(
    State(state): State<AppState>,
    q: QueryResult<UploadQuery>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let name = upload_name(q.name.as_deref())?;
    let chunk_size = q.chunk_size.unwrap_or(100);
    if !(1..=10_000).contains(&chunk_size) {
        return Err(ApiError::bad_request(
            "chunk_size must be within 1 and 10000",
        ));
    }
    if q.max_lag.is_some_and(|m| m > 1_000_000_000) {
        return Err(ApiError::bad_request(
            "max_lag must be within 0 and 1000000000",
        ));
    }
    let s = &state.0;
    let limit = s.settings.upload_limit;
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    if declared.is_some_and(|n| n > limit) {
        return Err(ApiError::too_large(limit));
    }
    let Ok(permit) = s.uploads.clone().try_acquire_owned() else {
        return Err(ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "busy",
            format!(
                "{} uploads are running; try again later",
                crate::serve::UPLOADS_AT_ONCE
            ),
        ));
    };
    let (dir, path) = spool_body(body, &name, limit).await?;

    let file_name = path.to_string_lossy().into_owned();
    let args = ImportArgs {
        file: file_name.clone(),
        chunk_size,
        max_lag: Some(q.max_lag.unwrap_or(1_000_000)),
        wait: false,
        wait_timeout_secs: None,
        rejects: None,
        force: false,
        new: q.new.unwrap_or(false),
        min_replicas: None,
    };
    let (conn, shutdown) = (s.conn.clone(), s.shutdown.clone());
    let task = tokio::spawn(async move {
        let report = import::import(&conn, &args, shutdown).await;
        drop(dir);
        drop(permit);
        report
    });
    if q.wait.unwrap_or(false) {
        let report = task
            .await
            .map_err(|e| anyhow::anyhow!("the import task failed: {e}"))?
            .map_err(|e| import_error(e, &file_name, &name))?;
        return Ok((StatusCode::OK, Json(report)).into_response());
    }
    // Answer as soon as the import exists (or failed before it did).
    let mut task = task;
    loop {
        tokio::select! {
            done = &mut task => {
                let report = done
                    .map_err(|e| anyhow::anyhow!("the import task failed: {e}"))?
                    .map_err(|e| import_error(e, &file_name, &name))?;
                return Ok(accepted(report.import_id));
            }
            _ = tokio::time::sleep(std::time::Duration::from_millis(50)) => {
                let id = oms_shared::store::lookup::import_id_by_file_name(&s.db, &file_name)
                    .await
                    .map_err(anyhow::Error::from)?;
                if let Some(id) = id {
                    return Ok(accepted(id));
                }
            }
        }
    }
}

/// Streams the body to `name` in a new dir of the spool (memory stays flat whatever the
/// size), refusing more than `limit` bytes, an empty body and a body slower than
/// [`MIN_UPLOAD_BYTES`] per [`UPLOAD_RATE_WINDOW`] (408). The dir lives as long as the
/// returned guard. Errors name no server path.
async fn spool_body(
    body: Body,
    name: &str,
    limit: u64,
) -> Result<(tempfile::TempDir, std::path::PathBuf), ApiError> {
    let spool = std::env::temp_dir().join(crate::serve::SPOOL_DIR);
    let spool_error = |what: &str, e: std::io::Error| {
        tracing::error!(error = %e, dir = %spool.display(), "{what}");
        ApiError::from(anyhow::anyhow!("{what}: {}", e.kind()))
    };
    std::fs::create_dir_all(&spool)
        .map_err(|e| spool_error("cannot create the upload spool", e))?;
    let dir =
        tempfile::tempdir_in(&spool).map_err(|e| spool_error("cannot create an upload dir", e))?;
    let path = dir.path().join(name);
    let mut file = tokio::fs::File::create(&path)
        .await
        .map_err(|e| spool_error("cannot create the upload file", e))?;
    let mut received: u64 = 0;
    let mut stream = body.into_data_stream();
    let mut window_start = tokio::time::Instant::now();
    let mut window_bytes: u64 = 0;
    loop {
        let deadline = window_start + UPLOAD_RATE_WINDOW;
        let chunk = match tokio::time::timeout_at(deadline, stream.next()).await {
            Ok(Some(chunk)) => chunk,
            Ok(None) => break,
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    too_slow(),
                ))
            }
        };
        let chunk = chunk.map_err(|e| ApiError::bad_request(format!("reading the body: {e}")))?;
        received += chunk.len() as u64;
        window_bytes += chunk.len() as u64;
        if received > limit {
            return Err(ApiError::too_large(limit));
        }
        if tokio::time::Instant::now() >= deadline {
            if window_bytes < MIN_UPLOAD_BYTES {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    "timeout",
                    too_slow(),
                ));
            }
            window_start = tokio::time::Instant::now();
            window_bytes = 0;
        }
        file.write_all(&chunk)
            .await
            .map_err(|e| spool_error("cannot write the upload", e))?;
    }
    file.flush()
        .await
        .map_err(|e| spool_error("cannot write the upload", e))?;
    drop(file);
    if received == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "bad_csv",
            "the body is empty: send a CSV file",
        ));
    }
    Ok((dir, path))
}

fn too_slow() -> String {
    format!(
        "the upload is too slow: at least {} KiB per {} s",
        MIN_UPLOAD_BYTES / 1024,
        UPLOAD_RATE_WINDOW.as_secs()
    )
}

fn accepted(import_id: u64) -> Response {
    (
        StatusCode::ACCEPTED,
        [(header::LOCATION, format!("/api/imports/{import_id}"))],
        Json(UploadAccepted {
            import_id,
            status_url: format!("/api/imports/{import_id}"),
        }),
    )
        .into_response()
}

/// An import that failed before enqueueing: a bad file is the client's (400 `bad_csv`,
/// logged at WARN), an unreachable server 503. The spooled file's path (a server path)
/// is shown as the upload's `name`.
fn import_error(e: anyhow::Error, spooled: &str, name: &str) -> ApiError {
    let message = oms_shared::error::one_line(e.as_ref()).replace(spooled, name);
    let api = super::super::error::classify(&e, message);
    if api.code == "internal" {
        tracing::warn!(error = %visible(&api.message), "upload refused");
        ApiError {
            status: StatusCode::BAD_REQUEST,
            code: "bad_csv",
            message: api.message,
        }
    } else {
        api
    }
}
