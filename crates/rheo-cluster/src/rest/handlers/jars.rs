//! `/jars`: the binary as Flink's one pseudo-jar, whose entries are the jobs it carries.

use super::*;

/// The file name of this binary (the pseudo-jar's name).
pub(super) fn binary_name() -> String {
    std::env::current_exe()
        .ok()
        .and_then(|path| path.file_name().map(|name| name.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "rheo".to_string())
}

/// `GET /jars`: one pseudo-jar, the binary, whose entries are the jobs it carries.
pub(super) async fn jars(Extract(state): Extract<Shared>) -> Answer<api::JarListInfo> {
    let entry = state
        .view
        .available_jobs()
        .into_iter()
        .map(|(name, description)| api::JarEntryInfo { name, description: Some(description) })
        .collect();
    ok(api::JarListInfo {
        address: state.address.clone(),
        files: vec![api::JarFileInfo { id: JAR_ID.into(), name: binary_name(), uploaded: state.started, entry }],
    })
}

/// Splits Flink's `programArgs` on whitespace; single or double quotes group words.
pub(crate) fn split_args(text: &str) -> Result<Vec<String>, String> {
    let mut args = Vec::new();
    let mut current: Option<String> = None;
    let mut quote: Option<char> = None;
    for c in text.chars() {
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => current.get_or_insert_default().push(c),
            None if c == '"' || c == '\'' => {
                quote = Some(c);
                current.get_or_insert_default();
            }
            None if c.is_whitespace() => args.extend(current.take()),
            None => current.get_or_insert_default().push(c),
        }
    }
    if let Some(q) = quote {
        return Err(format!("unbalanced {q} quote"));
    }
    args.extend(current);
    Ok(args)
}

/// The submission a `JarRunRequestBody` asks for, or a 400 naming the bad field.
pub(super) fn submit_request(state: &State, request: api::JarRunRequest) -> Result<SubmitRequest, Error> {
    const WHAT: &str = "JarRunRequestBody";
    let Some(job) = request.entry_class.filter(|job| !job.trim().is_empty()) else {
        let jobs: Vec<String> = state.view.available_jobs().into_iter().map(|(name, _)| name).collect();
        return Err(bad_field(WHAT, "entryClass", format!("the job to run is required (one of: {})", jobs.join(", "))));
    };
    let args = match (request.program_args, request.program_args_list) {
        (Some(_), Some(_)) => {
            return Err(bad_field(WHAT, "programArgs", "give either programArgs or programArgsList, not both"));
        }
        (Some(text), None) => split_args(&text).map_err(|e| bad_field(WHAT, "programArgs", e))?,
        (None, list) => list.unwrap_or_default(),
    };
    if request.parallelism == Some(0) {
        return Err(bad_field(WHAT, "parallelism", "must be at least 1"));
    }
    let job_id = request
        .job_id
        .map(|id| id.parse::<rheo_types::JobId>().map_err(|e| bad_field(WHAT, "jobId", e)))
        .transpose()?;
    Ok(SubmitRequest {
        job,
        args,
        parallelism: request.parallelism.map(|p| p as usize),
        job_id: job_id.map(|id| id.to_string()),
        savepoint_path: request.savepoint_path.filter(|p| !p.trim().is_empty()),
        allow_non_restored_state: request.allow_non_restored_state.unwrap_or(false),
        config: request.flink_configuration.unwrap_or_default().into_iter().collect(),
    })
}

/// `POST /jars/:jarid/run` with Flink's `JarRunRequestBody`: starts a job the binary carries.
pub(super) async fn run_jar(
    Extract(state): Extract<Shared>,
    Path(jar_id): Path<String>,
    bytes: Bytes,
) -> Answer<api::JarRunResponse> {
    if jar_id != JAR_ID {
        return Err(Error(
            StatusCode::NOT_FOUND,
            format!("Jar file {jar_id} does not exist (the only jar is '{JAR_ID}')"),
        ));
    }
    let request = submit_request(&state, body(&bytes, "JarRunRequestBody")?)?;
    let job = request.job.clone();
    // Submission may plan the job and read a savepoint: off the server's only thread.
    let view = state.view.clone();
    let submitted = tokio::task::spawn_blocking(move || view.submit(request))
        .await
        .map_err(|e| Error(StatusCode::INTERNAL_SERVER_ERROR, format!("job submission failed: {e}")))?;
    match submitted {
        Ok(job_id) => {
            tracing::info!(%job, %job_id, "job submitted (REST request)");
            ok(api::JarRunResponse { jobid: wire_id(&job_id), application_id: Some(job_id) })
        }
        Err(SubmitError::BadRequest(message)) => Err(Error(StatusCode::BAD_REQUEST, message)),
        Err(SubmitError::Conflict(message)) => Err(Error(StatusCode::CONFLICT, message)),
    }
}

/// `POST /jobs` (a JobGraph from `flink run`) and `POST /jars/upload`: Rheo names jobs, it
/// does not ship them, so it refuses with what to do instead.
///
/// The upload (the jar and the serialized JobGraph, megabytes) is read to its end and dropped
/// first: answering while the client is still sending makes the server close the connection,
/// and the Flink client then reports "Channel became inactive" instead of this message.
pub(super) async fn refuse_upload(Extract(state): Extract<Shared>, uri: Uri, body: axum::body::Body) -> Error {
    let mut frames = body.into_data_stream();
    while let Some(Ok(_)) = futures::StreamExt::next(&mut frames).await {}
    let jobs: Vec<String> = state.view.available_jobs().into_iter().map(|(name, _)| name).collect();
    let jobs = if jobs.is_empty() { "none".to_string() } else { jobs.join(", ") };
    Error(
        StatusCode::BAD_REQUEST,
        format!(
            "{} cannot run a jar or a JobGraph: Rheo runs the jobs its binary carries (here: {jobs}). \
             Submit one with 'rheo submit -m {} JOB [ARGS]', or POST /jars/{JAR_ID}/run with {{\"entryClass\": \"JOB\"}}; \
             a job of your own is a Rust program built on the rheo crate, run as this binary's image",
            uri.path(),
            state.address,
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_args_split_on_whitespace_with_quotes() {
        assert_eq!(split_args("  --input  a.txt -n 3 ").unwrap(), ["--input", "a.txt", "-n", "3"]);
        assert_eq!(split_args(r#"--name "two words" --x '' y"#).unwrap(), ["--name", "two words", "--x", "", "y"]);
        assert!(split_args(r#"--name "open"#).is_err());
        assert!(split_args("").unwrap().is_empty());
    }
}
