//! The D1 schema drift check.
//!
//! The Worker embeds the names of the migration files it was built with. At
//! runtime it reads the names D1 has applied (`d1_migrations`) and this module
//! decides whether the two agree. Serving traffic against a schema that is
//! behind (or ahead of) the code is refused by the health check.

use serde::{Deserialize, Serialize};

/// The outcome of comparing applied migrations with the expected ones.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "status", rename_all = "snake_case")]
pub enum SchemaStatus {
    /// Every expected migration is applied, in order, and nothing else.
    Current { version: u32, latest: String },
    /// No migrations have been applied at all.
    Missing { expected: Vec<String> },
    /// Applied migrations differ from the expected ones.
    Drift {
        version: u32,
        missing: Vec<String>,
        unexpected: Vec<String>,
    },
}

impl SchemaStatus {
    pub fn is_current(&self) -> bool {
        matches!(self, SchemaStatus::Current { .. })
    }

    /// A sentence for operators saying what is wrong and how to fix it.
    pub fn explain(&self) -> String {
        match self {
            SchemaStatus::Current { version, latest } => {
                format!("schema version {version} ({latest}) is current")
            }
            SchemaStatus::Missing { expected } => format!(
                "no D1 migrations are applied ({} expected); run `wrangler d1 migrations apply DB`",
                expected.len()
            ),
            SchemaStatus::Drift {
                missing,
                unexpected,
                ..
            } => {
                let mut parts = Vec::new();
                if !missing.is_empty() {
                    parts.push(format!("not applied: {}", missing.join(", ")));
                }
                if !unexpected.is_empty() {
                    parts.push(format!(
                        "applied but unknown to this Worker: {}",
                        unexpected.join(", ")
                    ));
                }
                format!(
                    "D1 schema does not match this Worker ({}); apply migrations or deploy the matching Worker",
                    parts.join("; ")
                )
            }
        }
    }
}

/// The schema version a migration file name encodes (`0007_x.sql` → 7).
pub fn migration_number(name: &str) -> Option<u32> {
    name.split('_').next()?.parse().ok()
}

/// Compares applied migration names with the expected ones.
pub fn check_schema(expected: &[&str], applied: &[String]) -> SchemaStatus {
    if applied.is_empty() {
        return SchemaStatus::Missing {
            expected: expected.iter().map(|s| s.to_string()).collect(),
        };
    }
    let missing: Vec<String> = expected
        .iter()
        .filter(|e| !applied.iter().any(|a| a == *e))
        .map(|s| s.to_string())
        .collect();
    let unexpected: Vec<String> = applied
        .iter()
        .filter(|a| !expected.contains(&a.as_str()))
        .cloned()
        .collect();
    let version = applied
        .iter()
        .filter_map(|a| migration_number(a))
        .max()
        .unwrap_or(0);
    match expected.last() {
        Some(latest) if missing.is_empty() && unexpected.is_empty() => SchemaStatus::Current {
            version,
            latest: latest.to_string(),
        },
        _ => SchemaStatus::Drift {
            version,
            missing,
            unexpected,
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXPECTED: &[&str] = &["0001_accounts.sql", "0002_operations.sql"];

    fn names(v: &[&str]) -> Vec<String> {
        v.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn current() {
        let s = check_schema(EXPECTED, &names(EXPECTED));
        assert_eq!(
            s,
            SchemaStatus::Current {
                version: 2,
                latest: "0002_operations.sql".into()
            }
        );
        assert!(s.is_current());
    }

    #[test]
    fn missing_entirely() {
        let s = check_schema(EXPECTED, &[]);
        assert!(matches!(s, SchemaStatus::Missing { .. }));
        assert!(s.explain().contains("wrangler d1 migrations apply"));
    }

    #[test]
    fn stale_and_ahead() {
        let stale = check_schema(EXPECTED, &names(&["0001_accounts.sql"]));
        assert_eq!(
            stale,
            SchemaStatus::Drift {
                version: 1,
                missing: names(&["0002_operations.sql"]),
                unexpected: vec![]
            }
        );
        assert!(stale.explain().contains("not applied: 0002_operations.sql"));
        let ahead = check_schema(
            EXPECTED,
            &names(&["0001_accounts.sql", "0002_operations.sql", "0003_x.sql"]),
        );
        assert!(
            ahead
                .explain()
                .contains("unknown to this Worker: 0003_x.sql")
        );
        assert!(!ahead.is_current());
    }
}
