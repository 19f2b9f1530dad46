//! How `baton admin` fails: the exit code and the error code it reports.
//!
//! Exit codes: 0 success; 1 failure; 2 usage (clap's: an unknown flag, a
//! missing argument); 3 not found (an unknown topic, partition or group).
//! Scripts can tell "it is not there" from "something broke" without
//! parsing messages.
//!
//! Under `--json` an error is one JSON document on stdout, so a tool
//! reading stdout always gets JSON: `{"error":{"code":"...","message":"..."}}`.
//! `code` is the Kafka error name (`UNKNOWN_TOPIC_OR_PARTITION`,
//! `GROUP_ID_NOT_FOUND`, ...) when the broker answered with one,
//! `NETWORK_EXCEPTION` when no broker could be reached or a connection
//! failed, else `ERROR`. Without `--json` the message goes to stderr as
//! `Error: ...`.

use client::ClientError;
use kafka_protocol::ResponseError;
use serde_json::json;

/// `baton admin` exit codes.
pub mod exit {
    /// Success.
    pub const OK: i32 = 0;
    /// Any failure not listed below.
    pub const FAILURE: i32 = 1;
    /// Bad usage, as clap reports it.
    pub const USAGE: i32 = 2;
    /// The topic, partition or group does not exist.
    pub const NOT_FOUND: i32 = 3;
}

/// Kafka errors that mean "no such thing".
const NOT_FOUND: [ResponseError; 4] = [
    ResponseError::UnknownTopicOrPartition,
    ResponseError::UnknownTopicId,
    ResponseError::GroupIdNotFound,
    ResponseError::ResourceNotFound,
];

/// What a failed command reports: its error code and exit code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `UNKNOWN_TOPIC_OR_PARTITION`, `NETWORK_EXCEPTION`, `ERROR`, ...
    pub code: String,
    /// One of [`exit`]'s codes.
    pub exit: i32,
}

/// Classifies an error by the first client error in its chain (a Kafka
/// error code, looking through retries; or a connection failure).
pub fn classify(error: &anyhow::Error) -> Failure {
    let client = error.chain().find_map(|e| e.downcast_ref::<ClientError>());
    let kafka = client.and_then(ClientError::kafka_error);
    let code = match (kafka, client) {
        (Some(kafka), _) => kafka_name(kafka),
        (None, Some(e)) if is_network(e) => "NETWORK_EXCEPTION".into(),
        _ => "ERROR".into(),
    };
    let exit = match kafka {
        Some(k) if NOT_FOUND.contains(&k) => exit::NOT_FOUND,
        _ => exit::FAILURE,
    };
    Failure { code, exit }
}

fn is_network(error: &ClientError) -> bool {
    match error {
        ClientError::Io { .. } => true,
        ClientError::Exhausted { last, .. } => is_network(last),
        _ => false,
    }
}

/// Kafka's name for an error code: `UnknownTopicOrPartition` ->
/// `UNKNOWN_TOPIC_OR_PARTITION`, as in Kafka's `Errors` enum.
pub fn kafka_name(error: ResponseError) -> String {
    if let ResponseError::Unknown(code) = error {
        return format!("UNKNOWN_ERROR_CODE_{code}");
    }
    let mut name = String::new();
    for (i, c) in error.to_string().chars().enumerate() {
        if c.is_ascii_uppercase() && i > 0 {
            name.push('_');
        }
        name.push(c.to_ascii_uppercase());
    }
    name
}

/// The error and its causes, joined by ": "; a cause whose text its
/// parent already ends with (an I/O error quoted by the client's error) is
/// not repeated.
pub fn message(error: &anyhow::Error) -> String {
    let mut text = String::new();
    for cause in error.chain() {
        let part = cause.to_string();
        if text.ends_with(&part) {
            continue;
        }
        if !text.is_empty() {
            text.push_str(": ");
        }
        text.push_str(&part);
    }
    text
}

/// The error document printed under `--json`.
pub fn error_json(error: &anyhow::Error) -> serde_json::Value {
    let failure = classify(error);
    json!({ "error": { "code": failure.code, "message": message(error) } })
}

/// Prints `error` (JSON on stdout, or text on stderr) and returns the exit
/// code.
pub fn report(error: &anyhow::Error, as_json: bool) -> i32 {
    if as_json {
        // Not `outln!`: a closed stdout must not turn a failure into exit 0.
        let _ = super::write_line(format_args!("{}", error_json(error)));
    } else {
        super::warn(&format!("Error: {}", message(error)));
    }
    classify(error).exit
}

#[cfg(test)]
mod tests {
    use super::*;
    use anyhow::Context;

    fn kafka(error: ResponseError) -> ClientError {
        ClientError::Kafka {
            context: "describe topic t".into(),
            error,
        }
    }

    #[test]
    fn errors_map_to_codes_and_exits() {
        let io = || ClientError::Io {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::from(std::io::ErrorKind::ConnectionRefused),
        };
        let cases: Vec<(anyhow::Error, &str, i32)> = vec![
            (
                kafka(ResponseError::UnknownTopicOrPartition).into(),
                "UNKNOWN_TOPIC_OR_PARTITION",
                3,
            ),
            (
                kafka(ResponseError::UnknownTopicId).into(),
                "UNKNOWN_TOPIC_ID",
                3,
            ),
            (
                kafka(ResponseError::GroupIdNotFound).into(),
                "GROUP_ID_NOT_FOUND",
                3,
            ),
            (
                kafka(ResponseError::TopicAlreadyExists).into(),
                "TOPIC_ALREADY_EXISTS",
                1,
            ),
            (
                kafka(ResponseError::InvalidTopicException).into(),
                "INVALID_TOPIC_EXCEPTION",
                1,
            ),
            (
                kafka(ResponseError::NonEmptyGroup).into(),
                "NON_EMPTY_GROUP",
                1,
            ),
            (
                kafka(ResponseError::Unknown(999)).into(),
                "UNKNOWN_ERROR_CODE_999",
                1,
            ),
            // Looked for through context and retries.
            (
                Err::<(), _>(kafka(ResponseError::GroupIdNotFound))
                    .context("while resetting")
                    .unwrap_err(),
                "GROUP_ID_NOT_FOUND",
                3,
            ),
            (
                ClientError::Exhausted {
                    attempts: 3,
                    last: Box::new(kafka(ResponseError::UnknownTopicOrPartition)),
                }
                .into(),
                "UNKNOWN_TOPIC_OR_PARTITION",
                3,
            ),
            (io().into(), "NETWORK_EXCEPTION", 1),
            (
                Err::<(), _>(io())
                    .context("cannot reach 127.0.0.1:1")
                    .unwrap_err(),
                "NETWORK_EXCEPTION",
                1,
            ),
            (ClientError::Protocol("short".into()).into(), "ERROR", 1),
            (anyhow::anyhow!("election refused"), "ERROR", 1),
        ];
        for (error, code, exit) in cases {
            let expected = Failure {
                code: code.into(),
                exit,
            };
            assert_eq!(classify(&error), expected, "{error:#}");
        }
    }

    #[test]
    fn error_json_carries_code_and_whole_message() {
        let error = Err::<(), _>(kafka(ResponseError::UnknownTopicOrPartition))
            .context("cannot reset")
            .unwrap_err();
        let doc = error_json(&error);
        assert_eq!(doc["error"]["code"], "UNKNOWN_TOPIC_OR_PARTITION");
        let message = doc["error"]["message"].as_str().unwrap();
        assert!(
            message.starts_with("cannot reset: describe topic t"),
            "{message}"
        );
    }

    #[test]
    fn messages_do_not_repeat_quoted_causes() {
        let io = ClientError::Io {
            addr: "127.0.0.1:1".into(),
            source: std::io::Error::other("Connection refused"),
        };
        let error = Err::<(), _>(io)
            .context("cannot reach 127.0.0.1:1")
            .unwrap_err();
        assert_eq!(
            message(&error),
            "cannot reach 127.0.0.1:1: connection to 127.0.0.1:1: Connection refused"
        );
    }
}
