//! The configuration's failure messages: the `config` crate's errors and the checks' errors
//! rebuilt as one line each, naming the setting, what is wrong and what would be right, and the
//! variable or file that set it. It reads nothing; it is told where the values came from.

use std::path::Path;

use crate::config::environment::IDENTUS_VARIABLES;

/// Where the configuration came from, to tell the operator where a bad value was set.
pub(super) struct Sources<'a> {
    pub(super) file: Option<&'a Path>,
    pub(super) env: &'a [(String, String)],
}

impl Sources<'_> {
    /// The variable or file that set `key` (such as `dispatcher.batch_size` or
    /// `transport.allowed_cidrs[1]`): the one read last wins, as the loader layers them.
    fn of(&self, key: &str) -> Option<String> {
        let key = key.split('[').next().unwrap_or(key);
        let set = |name: &str| self.env.iter().any(|(k, _)| k.eq_ignore_ascii_case(name));
        if let Some((variable, _)) = IDENTUS_VARIABLES.iter().find(|(_, k)| *k == key)
            && set(variable)
        {
            return Some(format!("from {variable}"));
        }
        // The environment source takes a setting's variable, and every variable beneath it.
        let mut path = key;
        loop {
            let variable = format!("WEBHOOKD_{}", path.replace('.', "__")).to_ascii_uppercase();
            if set(&variable) {
                return Some(format!("from {variable}"));
            }
            match path.rsplit_once('.') {
                Some((parent, _)) => path = parent,
                None => break,
            }
        }
        self.file.map(|file| format!("in {}", file.display()))
    }

    /// A validation error (`key: problem`) with where the key was set.
    pub(super) fn locate(&self, error: &anyhow::Error) -> anyhow::Error {
        let message = format!("{error:#}");
        let source = message
            .split_once(": ")
            .filter(|(key, _)| !key.contains(' '))
            .and_then(|(key, _)| self.of(key));
        match source {
            Some(source) => anyhow::anyhow!("{message} ({source})"),
            None => anyhow::anyhow!("{message}"),
        }
    }

    /// One line: the setting, what is wrong and what would be right, and where it was set.
    pub(super) fn explain(&self, error: config::ConfigError) -> anyhow::Error {
        let (key, problem) = match error {
            config::ConfigError::Type {
                unexpected,
                expected,
                key,
                ..
            } => (key, mismatch(&unexpected.to_string(), expected)),
            config::ConfigError::At { error, key, .. } => (key, serde_message(&error.to_string())),
            config::ConfigError::NotFound(key) => (Some(key), "missing".to_owned()),
            other => (None, serde_message(&other.to_string())),
        };
        // serde names an unknown field only in its message; make it part of the key.
        let (key, problem) = match problem
            .strip_prefix("unknown field `")
            .and_then(|rest| rest.split_once('`'))
        {
            Some((field, allowed)) => {
                let key = match key {
                    Some(parent) => format!("{parent}.{field}"),
                    None => field.to_owned(),
                };
                let allowed = allowed.trim_start_matches(',').trim().replace('`', "");
                (Some(key), format!("unknown setting; {allowed}"))
            }
            None => (key, problem),
        };
        match key {
            Some(key) => match self.of(&key) {
                Some(source) => anyhow::anyhow!("{key}: {problem} ({source})"),
                None => anyhow::anyhow!("{key}: {problem}"),
            },
            None => anyhow::anyhow!("configuration: {problem}"),
        }
    }
}

/// serde's `invalid type: integer `3`, expected struct X` in the words of [`mismatch`]; any
/// other message as it is.
fn serde_message(message: &str) -> String {
    let parsed = message
        .strip_prefix("invalid type: ")
        .or_else(|| message.strip_prefix("invalid value: "))
        .and_then(|rest| rest.split_once(", expected "));
    match parsed {
        Some((unexpected, expected)) if expected.starts_with("struct ") => {
            mismatch(unexpected, "a table of settings")
        }
        Some((unexpected, expected)) => mismatch(unexpected, expected),
        None => message.to_owned(),
    }
}

/// A value of the wrong type, in words: config describes it as `string "abc"` or
/// `64-bit unsigned integer `99999999999``, and what it wanted in Rust's terms.
fn mismatch(unexpected: &str, expected: &str) -> String {
    let value = match unexpected.split_once('`') {
        Some((_, quoted)) => quoted.trim_end_matches('`'),
        None => unexpected.strip_prefix("string ").unwrap_or(unexpected),
    };
    let allowed = if expected.contains("unsigned 32 bit") {
        format!("a whole number from 0 to {}", u32::MAX)
    } else if expected.contains("unsigned") {
        "a whole number, 0 or more".to_owned()
    } else if expected.contains("integer") {
        "a whole number".to_owned()
    } else if expected == "a boolean" {
        "true or false".to_owned()
    } else {
        expected.to_owned()
    };
    if unexpected.contains("integer") && expected.contains("integer") {
        format!("{value} is out of range; expected {allowed}")
    } else {
        format!("{value} is not allowed; expected {allowed}")
    }
}
#[cfg(test)]
mod tests {
    use crate::config::environment::env;
    use crate::config::schema::Settings;

    #[test]
    fn configuration_errors_are_one_line_naming_the_setting_and_its_source() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("webhookd.toml");
        let shown = file.display().to_string();
        let check = |contents: Option<&str>, vars: &[(&str, &str)], expected: &str| {
            if let Some(contents) = contents {
                std::fs::write(&file, contents).unwrap();
            }
            let err = Settings::build(contents.map(|_| file.as_path()), &env(vars)).unwrap_err();
            let err = format!("{err:#}");
            assert_eq!(err, expected.replace("FILE", &shown));
        };
        check(
            Some("listn = \"x\""),
            &[],
            "listn: unknown setting; expected one of listen, role, base_path, data_dir, database_url, database_pool_size, migrate_on_start, max_webhooks_per_wallet, default_retry_policy, sources, api, console, dispatcher, transport, retention, identus (in FILE)",
        );
        check(
            Some("[retention]\nmax_age = 3"),
            &[],
            "retention.max_age: unknown setting; expected one of max_age_hours, interval_secs, batch_size (in FILE)",
        );
        check(
            None,
            &[("WEBHOOKD_RETENTION__MAXAGE", "3")],
            "retention.maxage: unknown setting; expected one of max_age_hours, interval_secs, batch_size (from WEBHOOKD_RETENTION__MAXAGE)",
        );
        check(
            Some("[dispatcher]\nbatch_size = \"many\""),
            &[],
            "dispatcher.batch_size: \"many\" is not allowed; expected a whole number (in FILE)",
        );
        check(
            Some("[dispatcher]\nbatch_size = 5"),
            &[("WEBHOOKD_DISPATCHER__BATCH_SIZE", "-1")],
            "dispatcher.batch_size: -1 is out of range; expected a whole number, 0 or more (from WEBHOOKD_DISPATCHER__BATCH_SIZE)",
        );
        check(
            None,
            &[("WEBHOOKD_RETENTION__MAX_AGE_HOURS", "-0.5")],
            "retention.max_age_hours: must be from 0 (keep everything) to 1000000, got -0.5 (from WEBHOOKD_RETENTION__MAX_AGE_HOURS)",
        );
        check(
            Some("[retention]\nmax_age_hours = nan"),
            &[],
            "retention.max_age_hours: must be from 0 (keep everything) to 1000000, got NaN (in FILE)",
        );
        check(
            Some("[retention]\nmax_age_hours = 2e6"),
            &[],
            "retention.max_age_hours: must be from 0 (keep everything) to 1000000, got 2000000 (in FILE)",
        );
        check(
            None,
            &[("WEBHOOKD_TRANSPORT__SSRF_GUARD", "perhaps")],
            "transport.ssrf_guard: \"perhaps\" is not allowed; expected true or false (from WEBHOOKD_TRANSPORT__SSRF_GUARD)",
        );
        check(
            None,
            &[("WEBHOOKD_DISPATCHER", "3")],
            "dispatcher: 3 is not allowed; expected a table of settings (from WEBHOOKD_DISPATCHER)",
        );
        check(
            Some("default_retry_policy = { kind = \"fixed\", maxAttempts = 3 }"),
            &[],
            "default_retry_policy.intervalMs: missing (in FILE)",
        );
        check(
            Some("[dispatcher]\nlease_ms = 1000"),
            &[],
            "dispatcher.lease_ms: must be longer than dispatcher.attempt_timeout_ms (5000), got 1000 (in FILE)",
        );
        check(
            Some("listen = \"127.0.0.1:8080\"\n[api\n"),
            &[],
            "configuration file FILE: not valid TOML at line 2, column 5: unclosed table, expected `]`",
        );
    }
}
