//! Manifest parsing, every rejection with its field path, canonical TOML
//! round trips (hand cases and generated manifests), hashing, the starter file
//! and devcontainer.json translation.

use proptest::prelude::*;

use super::*;

const BASES: [BaseImage<'static>; 2] = [
    BaseImage {
        name: "runtime",
        image: "burstflare/runtime:latest",
    },
    BaseImage {
        name: "python",
        image: "burstflare/python:3.12",
    },
];

const EXAMPLE: &str = r#"
base = "runtime"
instance_type = "small"
editor = false
sleep_ttl = "30m"
packages = ["jq", "curl=7.88.1-10+deb12u5"]
setup = ["mkdir -p /opt/tool", "echo 1.0 > /opt/tool/VERSION"]
start = ["echo started"]
persist = ["/home/dev", "/workspace"]

[env]
EDITOR = "vim"

[[ports]]
port = 3000
name = "web"
"#;

fn parse(text: &str) -> Result<Manifest, ManifestError> {
    Manifest::parse_toml(text, &BASES)
}

fn strings(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

fn example() -> Manifest {
    Manifest {
        base: "runtime".into(),
        instance_type: InstanceType::Small,
        editor: false,
        sleep_ttl_secs: 1800,
        retention_secs: 30 * 86_400,
        packages: strings(&["jq", "curl=7.88.1-10+deb12u5"]),
        setup: strings(&["mkdir -p /opt/tool", "echo 1.0 > /opt/tool/VERSION"]),
        start: strings(&["echo started"]),
        env: BTreeMap::from([("EDITOR".into(), "vim".into())]),
        ports: vec![Port {
            port: 3000,
            name: Some("web".into()),
        }],
        persist: strings(&["/home/dev", "/workspace"]),
    }
}

/// Parses `base = "runtime"` plus `extra` and returns the error's field.
#[track_caller]
fn rejected(extra: &str) -> ManifestError {
    match parse(&format!("base = \"runtime\"\n{extra}")) {
        Ok(m) => panic!("accepted {extra:?} as {m:?}"),
        Err(e) => e,
    }
}

#[track_caller]
fn assert_field(extra: &str, field: &str) -> ManifestError {
    let e = rejected(extra);
    assert_eq!(e.field, field, "{extra:?}: {e}");
    e
}

fn toml_array(items: impl IntoIterator<Item = String>) -> String {
    let quoted: Vec<String> = items.into_iter().map(|s| format!("{s:?}")).collect();
    format!("[{}]", quoted.join(", "))
}

// ---------------------------------------------------------------- parsing

#[test]
fn the_example_parses() {
    assert_eq!(parse(EXAMPLE), Ok(example()));
}

#[test]
fn defaults_fill_everything_but_base() {
    let m = parse("base = \"runtime\"").unwrap();
    assert_eq!(m, Manifest::new("runtime"));
    assert_eq!(m.instance_type, InstanceType::Small);
    assert!(!m.editor);
    assert_eq!(m.sleep_ttl_secs, 30 * 60);
    assert!(m.packages.is_empty() && m.setup.is_empty() && m.start.is_empty());
    assert!(m.env.is_empty() && m.ports.is_empty());
    assert_eq!(m.persist, ["/home/dev"]);
}

#[test]
fn other_values_parse() {
    let m = parse(
        r#"
base = "python"
instance_type = "large"
editor = true
sleep_ttl = "2h"
persist = []
ports = [{ port = 8080 }, { port = 65535, name = "a-1" }]
"#,
    )
    .unwrap();
    assert_eq!(m.base, "python");
    assert_eq!(m.instance_type, InstanceType::Large);
    assert!(m.editor);
    assert_eq!(m.sleep_ttl_secs, 7200);
    assert!(m.persist.is_empty());
    assert_eq!(
        m.ports,
        [
            Port {
                port: 8080,
                name: None
            },
            Port {
                port: 65535,
                name: Some("a-1".into())
            }
        ]
    );
}

#[test]
fn base_is_required_and_must_be_known() {
    let e = parse("editor = true").unwrap_err();
    assert_eq!(
        (e.field.as_str(), e.message.as_str()),
        ("base", "is required")
    );

    let e = parse("base = \"ubuntu\"").unwrap_err();
    assert_eq!(e.field, "base");
    assert_eq!(
        e.message,
        "\"ubuntu\" is not a known base image; known: runtime, python"
    );
    let e = Manifest::parse_toml("base = \"runtime\"", &[]).unwrap_err();
    assert_eq!(e.field, "base");
    assert!(e.message.contains("none are configured"), "{e}");
    assert_eq!(parse("base = 1").unwrap_err().field, "base");
}

#[test]
fn unknown_keys_are_named() {
    let e = assert_field("pakages = [\"jq\"]", "pakages");
    assert!(e.message.contains("did you mean \"packages\"?"), "{e}");
    assert!(
        e.message.contains("the keys are base, instance_type"),
        "{e}"
    );

    let e = assert_field("frobnicate = 1", "frobnicate");
    assert!(!e.message.contains("did you mean"), "{e}");

    // Tables that are not ours, and keys under [env] that are not strings.
    assert_field("[build]\nx = 1", "build");

    let e = assert_field("[[ports]]\nport = 3000\nnmae = \"web\"", "ports[0].nmae");
    assert!(e.message.contains("did you mean \"name\"?"), "{e}");
    assert_field(
        "[[ports]]\nport = 3000\n[[ports]]\nport = 3001\nprotocol = \"tcp\"",
        "ports[1].protocol",
    );
}

#[test]
fn wrong_types_name_the_field() {
    for (extra, field, fragment) in [
        (
            "instance_type = 2",
            "instance_type",
            "must be a string, not integer",
        ),
        (
            "editor = \"yes\"",
            "editor",
            "must be true or false, not string",
        ),
        (
            "sleep_ttl = 1800",
            "sleep_ttl",
            "must be a string, not integer",
        ),
        (
            "packages = \"jq\"",
            "packages",
            "must be an array of strings",
        ),
        ("packages = [\"jq\", 1]", "packages[1]", "must be a string"),
        (
            "setup = [true]",
            "setup[0]",
            "must be a string, not boolean",
        ),
        ("start = \"x\"", "start", "must be an array"),
        ("persist = \"/home/dev\"", "persist", "must be an array"),
        ("env = [\"A=1\"]", "env", "must be a table"),
        ("[env]\nFOO = 1", "env.FOO", "must be a string, not integer"),
        ("ports = 3000", "ports", "must be an array of tables"),
        ("ports = [3000]", "ports[0]", "must be a table"),
        ("[[ports]]\nname = \"web\"", "ports[0].port", "is required"),
        (
            "[[ports]]\nport = \"3000\"",
            "ports[0].port",
            "must be an integer",
        ),
        (
            "[[ports]]\nport = 3000\nname = 1",
            "ports[0].name",
            "must be a string",
        ),
        ("[[ports]]\nport = 3000.0", "ports[0].port", "not float"),
    ] {
        let e = assert_field(extra, field);
        assert!(e.message.contains(fragment), "{extra:?}: {e}");
    }
}

#[test]
fn instance_type_must_be_known() {
    let e = assert_field("instance_type = \"huge\"", "instance_type");
    assert!(e.message.contains("\"huge\""), "{e}");
    for t in InstanceType::ALL {
        let m = parse(&format!(
            "base = \"runtime\"\ninstance_type = {:?}",
            t.as_str()
        ))
        .unwrap();
        assert_eq!(m.instance_type, t);
    }
}

#[test]
fn sleep_ttl_accepts_s_m_h_within_1m_to_24h() {
    for (raw, secs) in [
        ("60s", 60),
        ("90s", 90),
        ("1m", 60),
        ("30m", 1800),
        ("2h", 7200),
        ("24h", 86400),
        ("1440m", 86400),
        ("1d", 86400),
        ("0090s", 90),
    ] {
        let m = parse(&format!("base = \"runtime\"\nsleep_ttl = {raw:?}")).unwrap();
        assert_eq!(m.sleep_ttl_secs, secs, "{raw}");
    }
    for (raw, fragment) in [
        ("5", "has no unit"),
        ("0m", "0s is out of range; use 1m to 24h"),
        ("59s", "59s is out of range"),
        ("25h", "25h is out of range"),
        ("1441m", "1441m is out of range"),
        ("99999999999999999999h", "is out of range"),
        ("4294967296s", "is out of range"),
        ("abc", "is not a duration"),
        ("", "is not a duration"),
        ("m", "is not a duration"),
        ("1.5h", "is not a duration"),
        ("-1m", "is not a duration"),
        ("30 m", "is not a duration"),
        ("30M", "is not a duration"),
        ("2d", "2d is out of range"),
        ("1h30m", "is not a duration"),
    ] {
        let e = assert_field(&format!("sleep_ttl = {raw:?}"), "sleep_ttl");
        assert!(e.message.contains(fragment), "{raw:?}: {e}");
    }
}

#[test]
fn packages_are_apt_names_with_optional_versions() {
    let long_name = "a".repeat(128);
    let long_version = format!("zz={}", "1".repeat(64));
    let good = [
        "jq",
        "g++",
        "libc6-dev",
        "python3.11",
        "0ad",
        "curl=7.88.1-10+deb12u5",
        "x=1:2.3~rc1-4",
        "y=A.b",
        long_name.as_str(),
        long_version.as_str(),
    ];
    let text = format!(
        "base = \"runtime\"\npackages = {}",
        toml_array(good.iter().map(|s| (*s).to_owned()))
    );
    assert_eq!(parse(&text).unwrap().packages, good);

    let too_long_name = "a".repeat(129);
    let too_long_version = format!("jq={}", "1".repeat(65));
    for bad in [
        "Jq",
        "-jq",
        "+jq",
        ".jq",
        "",
        "jq=",
        "=1.0",
        "jq=1 2",
        "jq==1",
        "jq=1=2",
        "jq 1",
        "jq_x",
        "jq;rm -rf /",
        "jq=1/2",
        "jq:amd64",
        too_long_name.as_str(),
        too_long_version.as_str(),
    ] {
        let e = assert_field(&format!("packages = [\"ok\", {bad:?}]"), "packages[1]");
        assert!(
            e.message.starts_with(&format!("{bad:?} is not a package")),
            "{e}"
        );
    }
}

#[test]
fn a_package_is_listed_once() {
    let e = assert_field("packages = [\"jq\", \"curl\", \"jq\"]", "packages[2]");
    assert_eq!(e.message, "package \"jq\" is already listed at packages[0]");
    // A pinned and an unpinned entry are the same package.
    assert_field("packages = [\"jq\", \"jq=1.6\"]", "packages[1]");
}

#[test]
fn at_most_200_packages() {
    let names = |n: usize| (0..n).map(|i| format!("p{i}"));
    let ok = format!("base = \"runtime\"\npackages = {}", toml_array(names(200)));
    assert_eq!(parse(&ok).unwrap().packages.len(), 200);
    let e = assert_field(
        &format!("packages = {}", toml_array(names(201))),
        "packages",
    );
    assert_eq!(e.message, "lists 201 packages; the limit is 200");
}

#[test]
fn commands_are_1_to_8192_bytes_without_nul() {
    let max = "x".repeat(8192);
    let m = parse(&format!(
        "base = \"runtime\"\nsetup = [{max:?}]\nstart = [{max:?}]"
    ))
    .unwrap();
    assert_eq!(m.setup[0].len(), 8192);

    for key in ["setup", "start"] {
        let e = assert_field(&format!("{key} = [\"ok\", \"\"]"), &format!("{key}[1]"));
        assert_eq!(e.message, "is empty");
        let e = assert_field(
            &format!("{key} = [{:?}]", "x".repeat(8193)),
            &format!("{key}[0]"),
        );
        assert_eq!(e.message, "is 8193 bytes; the limit is 8192");
        let e = assert_field(&format!("{key} = [\"a\\u0000b\"]"), &format!("{key}[0]"));
        assert_eq!(e.message, "contains a NUL character");

        let many = |n: usize| (0..n).map(|i| format!("echo {i}"));
        let ok = format!("base = \"runtime\"\n{key} = {}", toml_array(many(100)));
        assert!(parse(&ok).is_ok());
        let e = assert_field(&format!("{key} = {}", toml_array(many(101))), key);
        assert_eq!(e.message, "has 101 commands; the limit is 100");
    }
}

#[test]
fn env_names_and_values_are_checked() {
    let m = parse("base = \"runtime\"\n[env]\n_X = \"\"\nlower_1 = \"a=b\"").unwrap();
    assert_eq!(m.env["_X"], "");
    assert_eq!(m.env["lower_1"], "a=b");

    let e = assert_field("[env]\nBURSTFLARE_X = \"1\"", "env.BURSTFLARE_X");
    assert_eq!(e.message, "BURSTFLARE_ names are reserved for the platform");
    let e = assert_field("[env]\n1X = \"1\"", "env.1X");
    assert!(
        e.message.starts_with("\"1X\" is not a variable name"),
        "{e}"
    );
    assert_field("[env]\n\"A-B\" = \"1\"", "env.A-B");
    assert_field("[env]\n\"\" = \"1\"", "env.");
    assert_field(
        &format!("[env]\n{} = \"1\"", "A".repeat(129)),
        &format!("env.{}", "A".repeat(129)),
    );

    let ok = format!("base = \"runtime\"\n[env]\nA = {:?}", "v".repeat(4096));
    assert!(parse(&ok).is_ok());
    let e = assert_field(&format!("[env]\nA = {:?}", "v".repeat(4097)), "env.A");
    assert_eq!(e.message, "value is 4097 bytes; the limit is 4096");
    let e = assert_field("[env]\nA = \"\\u0000\"", "env.A");
    assert_eq!(e.message, "value contains a NUL character");

    let vars = |n: usize| {
        (0..n)
            .map(|i| format!("V{i} = \"x\"\n"))
            .collect::<String>()
    };
    assert!(parse(&format!("base = \"runtime\"\n[env]\n{}", vars(64))).is_ok());
    let e = assert_field(&format!("[env]\n{}", vars(65)), "env");
    assert_eq!(e.message, "has 65 variables; the limit is 64");
}

#[test]
fn ports_are_checked() {
    let port = |p: &str| format!("[[ports]]\nport = {p}\n");
    for (p, fragment) in [
        ("22", "22 is reserved"),
        ("7070", "7070 is reserved"),
        ("0", "0 is not a port (1-65535)"),
        ("65536", "65536 is not a port (1-65535)"),
        ("70000", "70000 is not a port"),
        ("-1", "-1 is not a port"),
    ] {
        let e = assert_field(&port(p), "ports[0].port");
        assert!(e.message.contains(fragment), "{p}: {e}");
    }
    let e = assert_field(
        &format!("{}{}", port("3000"), port("3000")),
        "ports[1].port",
    );
    assert_eq!(e.message, "port 3000 is already listed at ports[0]");

    for bad in ["Web", "1web", "-web", "", "web_ui", &"a".repeat(33)] {
        let e = assert_field(
            &format!("[[ports]]\nport = 3000\nname = {bad:?}"),
            "ports[0].name",
        );
        assert!(e.message.contains("is not a port name"), "{e}");
    }
    let ok = format!(
        "base = \"runtime\"\n[[ports]]\nport = 1\nname = {:?}",
        "a".repeat(32)
    );
    assert!(parse(&ok).is_ok());
    let e = assert_field(
        "[[ports]]\nport = 3000\nname = \"web\"\n[[ports]]\nport = 3001\nname = \"web\"",
        "ports[1].name",
    );
    assert_eq!(e.message, "name \"web\" is already used by ports[0]");

    let many = |n: u16| {
        (0..n)
            .map(|i| port(&(3000 + i).to_string()))
            .collect::<String>()
    };
    assert_eq!(
        parse(&format!("base = \"runtime\"\n{}", many(20)))
            .unwrap()
            .ports
            .len(),
        20
    );
    let e = assert_field(&many(21), "ports");
    assert_eq!(e.message, "lists 21 ports; the limit is 20");
}

#[test]
fn persisted_paths_follow_the_session_rules() {
    let m = parse("base = \"runtime\"\npersist = [\"/workspace\", \"/home/dev/.cache\"]").unwrap();
    assert_eq!(m.persist, ["/workspace", "/home/dev/.cache"]);

    for (list, field, fragment) in [
        (r#"["../etc"]"#, "persist[0]", "\"../etc\" must be absolute"),
        (
            r#"["/home/dev", "/etc"]"#,
            "persist[1]",
            "must be under /home/dev or /workspace",
        ),
        (
            r#"["/home/dev/../etc"]"#,
            "persist[0]",
            "must be normalised",
        ),
        (r#"["/workspace/"]"#, "persist[0]", "must not end with `/`"),
        (r#"["/home/devx"]"#, "persist[0]", "must be under"),
        (
            r#"["/workspace", "/workspace"]"#,
            "persist[1]",
            "is listed twice",
        ),
    ] {
        let e = assert_field(&format!("persist = {list}"), field);
        assert!(e.message.contains(fragment), "{list}: {e}");
    }
    let paths = |n: usize| (0..n).map(|i| format!("/workspace/d{i}"));
    assert_eq!(
        parse(&format!(
            "base = \"runtime\"\npersist = {}",
            toml_array(paths(16))
        ))
        .unwrap()
        .persist
        .len(),
        16
    );
    let e = assert_field(&format!("persist = {}", toml_array(paths(17))), "persist");
    assert!(e.message.contains("at most 16"), "{e}");
}

#[test]
fn toml_syntax_errors_give_line_and_column() {
    let e = parse("base = \"runtime\"\neditor = false\npackages = [\"jq\"\n").unwrap_err();
    assert_eq!(e.field, "(toml)");
    assert_eq!(e.message, "line 3, column 17: unclosed array, expected `]`");

    let e = parse("base = \"runtime\"\n\nsleep_ttl = 30m\n").unwrap_err();
    assert_eq!(e.field, "(toml)");
    assert!(e.message.starts_with("line 3, column 13: "), "{e}");

    let e = parse("base = \"runtime\"\nbase = \"python\"\n").unwrap_err();
    assert_eq!(e.field, "(toml)");
    assert!(e.message.starts_with("line 2, "), "{e}");
    assert!(e.message.contains("duplicate"), "{e}");
}

#[test]
fn manifests_over_64_kib_are_refused() {
    let pad = |n: usize| format!("base = \"runtime\"\n#{}", "x".repeat(n));
    let head = pad(0).len();
    assert!(parse(&pad(MAX_MANIFEST_BYTES - head)).is_ok());
    let e = parse(&pad(MAX_MANIFEST_BYTES - head + 1)).unwrap_err();
    assert_eq!(e.field, "(toml)");
    assert_eq!(
        e.message,
        "the file is 65537 bytes; the limit is 65536 (64 KiB)"
    );
}

// ------------------------------------------------------------- errors

#[test]
fn errors_display_and_map_to_field_errors() {
    let e = assert_field("packages = [\"ok\", \"Bad\"]", "packages[1]");
    assert!(
        e.to_string()
            .starts_with("packages[1]: \"Bad\" is not a package")
    );
    let boxed: Box<dyn std::error::Error> = Box::new(e.clone());
    assert_eq!(boxed.to_string(), e.to_string());

    let fe = FieldError::from(e.clone());
    assert_eq!(fe.field, "packages");
    assert_eq!(fe.message, format!("packages[1]: {}", e.message));

    let fe = FieldError::from(ManifestError::new("sleep_ttl", "bad"));
    assert_eq!((fe.field, fe.message.as_str()), ("sleep_ttl", "bad"));
    let fe = FieldError::from(ManifestError::new("env.FOO", "bad"));
    assert_eq!((fe.field, fe.message.as_str()), ("env", "env.FOO: bad"));
    let fe = FieldError::from(ManifestError::new("(toml)", "line 1, column 1: x"));
    assert_eq!(fe.field, "(toml)");
    let fe = FieldError::from(ManifestError::new("pakages", "unknown key"));
    assert_eq!(
        (fe.field, fe.message.as_str()),
        ("manifest", "pakages: unknown key")
    );
    let fe = FieldError::from(ManifestError::new("forwardPorts[1]", "x"));
    assert_eq!(fe.field, "forwardPorts");
}

// --------------------------------------------------------- canonical form

#[test]
fn canonical_toml_of_the_example() {
    let expected = r#"base = "runtime"
instance_type = "small"
editor = false
sleep_ttl = "30m"
retention = "30d"
packages = ["jq", "curl=7.88.1-10+deb12u5"]
setup = ["mkdir -p /opt/tool", "echo 1.0 > /opt/tool/VERSION"]
start = ["echo started"]
persist = ["/home/dev", "/workspace"]

[env]
EDITOR = "vim"

[[ports]]
port = 3000
name = "web"
"#;
    assert_eq!(example().to_toml(), expected);
    assert_eq!(
        Manifest::new("runtime").to_toml(),
        "base = \"runtime\"\ninstance_type = \"small\"\neditor = false\nsleep_ttl = \"30m\"\nretention = \"30d\"\npackages = []\nsetup = []\nstart = []\npersist = [\"/home/dev\"]\n"
    );
}

#[test]
fn hand_cases_round_trip() {
    let mut tricky = Manifest::new("python");
    tricky.instance_type = InstanceType::Medium;
    tricky.editor = true;
    tricky.sleep_ttl_secs = 90;
    tricky.setup = strings(&[
        "echo \"quoted\" 'single' \\backslash\\",
        "line one\nline two\r\n\ttabbed",
        "bell \u{7} del \u{7f} esc \u{1b} bs \u{8} ff \u{c} nel \u{85}",
        "unicode: ünïcödé 🚀 \u{2028}",
        "''' \"\"\" # not a comment",
        &"long command ".repeat(20),
    ]);
    tricky.start = strings(&["x"; 30]);
    tricky.env = BTreeMap::from([
        ("EMPTY".into(), String::new()),
        ("_".into(), "=".into()),
        ("Q".into(), "a \"b\" \\c\n".into()),
    ]);
    tricky.ports = vec![
        Port {
            port: 65535,
            name: None,
        },
        Port {
            port: 1,
            name: Some("a".into()),
        },
    ];
    tricky.persist = Vec::new();
    for m in [example(), Manifest::new("runtime"), tricky] {
        let text = m.to_toml();
        assert_eq!(parse(&text), Ok(m.clone()), "{text}");
        assert_eq!(parse(&text).unwrap().to_toml(), text);
    }
}

#[test]
fn long_arrays_are_written_one_item_a_line() {
    let mut m = Manifest::new("runtime");
    m.setup = strings(&["x".repeat(60).as_str(), "y".repeat(60).as_str()]);
    let text = m.to_toml();
    assert!(
        text.contains(&format!(
            "setup = [\n    \"{}\",\n    \"{}\",\n]\n",
            "x".repeat(60),
            "y".repeat(60)
        )),
        "{text}"
    );
}

fn valid_manifest() -> impl Strategy<Value = Manifest> {
    let command = "[^\u{0}]{1,40}";
    let port = (1u16..=65535).prop_filter("reserved", |p| !RESERVED_PORTS.contains(p));
    (
        (
            prop::sample::select(vec!["runtime", "python"]),
            prop::sample::select(InstanceType::ALL.to_vec()),
            any::<bool>(),
            MIN_SLEEP_TTL_SECS..=MAX_SLEEP_TTL_SECS,
        ),
        prop::collection::btree_map(
            "[a-z0-9][a-z0-9+.-]{0,12}",
            prop::option::of("[A-Za-z0-9.+:~-]{1,12}"),
            0..8,
        ),
        prop::collection::vec(command, 0..6),
        prop::collection::vec(command, 0..6),
        prop::collection::btree_map(
            "[A-Za-z_][A-Za-z0-9_]{0,12}"
                .prop_filter("reserved", |n| !n.starts_with("BURSTFLARE_")),
            "[^\u{0}]{0,30}",
            0..6,
        ),
        prop::collection::btree_map(port, prop::option::of("[a-z][a-z0-9-]{0,8}"), 0..6),
        prop::sample::subsequence(
            vec![
                "/home/dev",
                "/workspace",
                "/home/dev/.cache",
                "/workspace/src/app",
            ],
            0..=4,
        ),
    )
        .prop_map(
            |((base, instance_type, editor, ttl), packages, setup, start, env, ports, persist)| {
                let mut names = Vec::new();
                let ports = ports
                    .into_iter()
                    .map(|(port, name)| {
                        // Port names are unique too: drop repeats.
                        let name = name.filter(|n| !names.contains(n));
                        names.extend(name.clone());
                        Port { port, name }
                    })
                    .collect();
                Manifest {
                    base: base.into(),
                    instance_type,
                    editor,
                    sleep_ttl_secs: ttl,
                    retention_secs: 3600 + ttl * 300,
                    packages: packages
                        .into_iter()
                        .map(|(name, version)| match version {
                            Some(v) => format!("{name}={v}"),
                            None => name,
                        })
                        .collect(),
                    setup,
                    start,
                    env,
                    ports,
                    persist: persist.into_iter().map(str::to_owned).collect(),
                }
            },
        )
}

proptest! {
    #[test]
    fn generated_manifests_round_trip(m in valid_manifest()) {
        prop_assert_eq!(m.clone().validate(&BASES), Ok(m.clone()));
        let text = m.to_toml();
        let back = parse(&text);
        prop_assert_eq!(back.as_ref(), Ok(&m), "{}", text);
        prop_assert_eq!(back.map(|b| b.hash()), Ok(m.hash()));
    }
}

// ------------------------------------------------------------------ hash

#[test]
fn hash_ignores_key_order_comments_and_whitespace() {
    let reordered = r#"
# The same manifest, written differently.
[[ports]]
name = "web"
port = 3000

[env]
   EDITOR   =   'vim'   # single quotes are a literal string

"#;
    let top = r#"persist = ["/home/dev", "/workspace"]
start = ["echo started"]
setup = [
  "mkdir -p /opt/tool",
  "echo 1.0 > /opt/tool/VERSION",
]
packages = ["jq", "curl=7.88.1-10+deb12u5",]
sleep_ttl = "1800s"
editor = false
base = "runtime"
"#;
    let a = parse(EXAMPLE).unwrap();
    let b = parse(&format!("{top}{reordered}")).unwrap();
    assert_eq!(a, b);
    assert_eq!(a.hash(), b.hash());
    // Defaults written out or left implicit hash the same.
    let implicit = parse("base = \"runtime\"").unwrap();
    let explicit = parse(&Manifest::new("runtime").to_toml()).unwrap();
    assert_eq!(implicit.hash(), explicit.hash());
}

#[test]
fn hash_is_lowercase_sha256_of_the_canonical_json() {
    let m = example();
    let h = m.hash();
    assert_eq!(h.len(), 64);
    assert!(
        h.bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
    );
    let json = serde_json::to_string(&m).unwrap();
    assert_eq!(
        json,
        r#"{"base":"runtime","instance_type":"small","editor":false,"sleep_ttl_secs":1800,"packages":["jq","curl=7.88.1-10+deb12u5"],"setup":["mkdir -p /opt/tool","echo 1.0 > /opt/tool/VERSION"],"start":["echo started"],"env":{"EDITOR":"vim"},"ports":[{"port":3000,"name":"web"}],"persist":["/home/dev","/workspace"]}"#
    );
    assert_eq!(h, hex::encode(Sha256::digest(json.as_bytes())));
    // Pinned: stored hashes must not change by accident.
    assert_eq!(h, PINNED_EXAMPLE_HASH);

    let mut other = m.clone();
    other.packages.reverse();
    assert_ne!(other.hash(), h, "package order is significant");
    let back: Manifest = serde_json::from_str(&json).unwrap();
    assert_eq!(back, m);
}

const PINNED_EXAMPLE_HASH: &str =
    "46606be87c64f5ff858ab3406becdc1265c06ca6cac906c88fd02dcd81809ff6";

// --------------------------------------------------------------- starter

#[test]
fn the_starter_parses_to_the_defaults() {
    let text = Manifest::starter("runtime");
    assert!(text.starts_with('#'));
    assert!(text.contains("1 CPU, 1 GiB"), "{text}");
    assert!(text.contains("[[ports]]"), "{text}");
    assert_eq!(parse(&text), Ok(Manifest::new("runtime")));
    assert_eq!(
        parse(&Manifest::starter("python")),
        Ok(Manifest::new("python"))
    );
    // The base is quoted, whatever it is.
    let odd = "we\"ird\\";
    let bases = [BaseImage {
        name: odd,
        image: "x",
    }];
    assert_eq!(
        Manifest::parse_toml(&Manifest::starter(odd), &bases),
        Ok(Manifest::new(odd))
    );
}

// --------------------------------------------------------- devcontainer

fn dev(json: &str) -> Result<(Manifest, Vec<Warning>), ManifestError> {
    from_devcontainer(json, &BASES)
}

fn warning(field: &str, message: &str) -> Warning {
    Warning {
        field: field.into(),
        message: message.into(),
    }
}

#[track_caller]
fn dev_error(json: &str, field: &str) -> ManifestError {
    let e = dev(json).unwrap_err();
    assert_eq!(e.field, field, "{json}: {e}");
    e
}

/// The Microsoft Debian template as generated, with features, ports, an
/// environment and the `vscode` user added.
const MICROSOFT_BASE: &str = r#"// For format details, see https://aka.ms/devcontainer.json. For config options, see the
// README at: https://github.com/devcontainers/templates/tree/main/src/debian
{
	"name": "Debian",
	// Or use a Dockerfile or Docker Compose file. More info: https://containers.dev/guide/dockerfile
	"image": "mcr.microsoft.com/devcontainers/base:bookworm",

	// Features to add to the dev container. More info: https://containers.dev/features.
	"features": {
		"ghcr.io/devcontainers/features/node:1": {},
		"ghcr.io/devcontainers/features/github-cli:1": { "version": "latest", },
	},

	// Use 'forwardPorts' to make a list of ports inside the container available locally.
	"forwardPorts": [3000, "localhost:8080"],

	/* The environment of every process.
	   A block comment, across lines. */
	"containerEnv": {
		"EDITOR": "vim", // a trailing comment
		"URL": "http://example.com/*not-a-comment*/", // ", a comma in a comment ]
		"QUOTE": "say \"hi\" // still a string",
	},

	// Use 'postCreateCommand' to run commands after the container is created.
	"postCreateCommand": "uname -a",

	// Configure tool-specific properties.
	"customizations": {
		"vscode": {
			"extensions": ["dbaeumer.vscode-eslint", "esbenp.prettier-vscode",],
		},
	},

	// Uncomment to connect as root instead. More info: https://aka.ms/dev-containers-non-root.
	"remoteUser": "vscode",
}
"#;

#[test]
fn the_microsoft_base_template_translates() {
    let (m, warnings) = dev(MICROSOFT_BASE).unwrap();
    let mut expected = Manifest::new("runtime");
    expected.editor = true;
    expected.setup = strings(&["uname -a"]);
    expected.ports = vec![
        Port {
            port: 3000,
            name: None,
        },
        Port {
            port: 8080,
            name: None,
        },
    ];
    expected.env = BTreeMap::from([
        ("EDITOR".into(), "vim".into()),
        ("URL".into(), "http://example.com/*not-a-comment*/".into()),
        ("QUOTE".into(), "say \"hi\" // still a string".into()),
    ]);
    assert_eq!(m, expected);
    assert_eq!(
        warnings,
        [
            warning(
                "features.ghcr.io/devcontainers/features/github-cli:1",
                "feature ghcr.io/devcontainers/features/github-cli:1 is not supported and was ignored"
            ),
            warning(
                "features.ghcr.io/devcontainers/features/node:1",
                "feature ghcr.io/devcontainers/features/node:1 is not supported and was ignored"
            ),
            warning(
                "remoteUser",
                "sessions run as \"dev\"; remoteUser \"vscode\" was ignored"
            ),
            warning(
                "customizations.vscode.extensions",
                "extensions are not installed in the browser editor: dbaeumer.vscode-eslint, esbenp.prettier-vscode"
            ),
        ]
    );
    // The translation is a manifest like any other.
    assert_eq!(parse(&m.to_toml()), Ok(m));
}

#[test]
fn images_map_to_bases() {
    for (image, base) in [
        ("burstflare/runtime:latest", "runtime"),
        ("runtime", "runtime"),
        ("burstflare/python:3.12", "python"),
        ("python", "python"),
        ("debian:bookworm", "runtime"),
        ("debian:bookworm-slim", "runtime"),
        ("mcr.microsoft.com/devcontainers/base:debian", "runtime"),
    ] {
        let (m, warnings) = dev(&format!(r#"{{"image": {image:?}}}"#)).unwrap();
        assert_eq!(m, Manifest::new(base), "{image}");
        assert_eq!(warnings, [], "{image}");
    }
    for image in COMMON_DEVCONTAINER_IMAGES {
        assert_eq!(
            dev(&format!(r#"{{"image": {image:?}}}"#)).unwrap().0.base,
            "runtime"
        );
    }

    let (m, warnings) = dev(r#"{"name": "no image"}"#).unwrap();
    assert_eq!(m, Manifest::new("runtime"));
    assert_eq!(
        warnings,
        [warning("image", "no image given; using the runtime base")]
    );

    let e = dev_error(r#"{"image": "node:20"}"#, "image");
    assert!(e.message.starts_with("\"node:20\" is not a supported image; use one of \"burstflare/runtime:latest\", \"burstflare/python:3.12\", \"mcr.microsoft.com/devcontainers/base:bookworm\""), "{e}");
    assert!(e.message.ends_with(", or omit image to use runtime"), "{e}");
    dev_error(r#"{"image": 1}"#, "image");
    let e = from_devcontainer("{}", &[]).unwrap_err();
    assert_eq!(e.field, "image");
}

#[test]
fn image_builds_and_compose_are_errors() {
    let e = dev_error(
        r#"{"image": "debian:bookworm", "build": {"dockerfile": "Dockerfile"}}"#,
        "build",
    );
    assert!(
        e.message
            .contains("move the Dockerfile's RUN steps into postCreateCommand"),
        "{e}"
    );
    dev_error(r#"{"dockerFile": "Dockerfile"}"#, "dockerFile");
    dev_error(
        r#"{"dockerComposeFile": "compose.yml", "service": "app"}"#,
        "dockerComposeFile",
    );
}

#[test]
fn command_forms() {
    let (m, warnings) = dev(r#"{
        "image": "runtime",
        "postCreateCommand": {
            "zz-last": "echo z",
            "install": ["apt-get", "install", "-y", "jq"],
            "quoted": ["printf", "%s\n", "it's", "", "a b", "$HOME", "ok=1,2:3@x"],
        },
        "updateContentCommand": ["npm", "ci"],
        "onCreateCommand": "echo on-create && echo again",
        "postStartCommand": {"b": "echo b", "a": ["echo", "a"]},
        "postAttachCommand": "echo attached",
        "initializeCommand": "echo on the host",
    }"#)
    .unwrap();
    assert_eq!(
        m.setup,
        [
            "echo on-create && echo again",
            "npm ci",
            "apt-get install -y jq",
            r#"printf '%s
' 'it'\''s' '' 'a b' '$HOME' ok=1,2:3@x"#,
            "echo z",
        ]
    );
    assert_eq!(m.start, ["echo a", "echo b"]);
    assert_eq!(
        warnings,
        [
            warning(
                "initializeCommand",
                "initializeCommand runs on the local machine; it is not supported and was ignored"
            ),
            warning(
                "postAttachCommand",
                "postAttachCommand runs when a tool attaches; it is not supported and was ignored"
            ),
        ]
    );

    // Empty commands are no-ops; null is absent.
    let (m, _) = dev(r#"{"image": "runtime", "postCreateCommand": "", "onCreateCommand": [], "postStartCommand": null}"#).unwrap();
    assert!(m.setup.is_empty() && m.start.is_empty());

    let e = dev_error(r#"{"postCreateCommand": 1}"#, "postCreateCommand");
    assert_eq!(
        e.message,
        "must be a string, an array of arguments or an object of named commands, not a number"
    );
    dev_error(
        r#"{"postCreateCommand": ["echo", 1]}"#,
        "postCreateCommand[1]",
    );
    dev_error(
        r#"{"postStartCommand": {"a": {"b": "c"}}}"#,
        "postStartCommand.a",
    );
    dev_error(
        r#"{"postStartCommand": {"a": ["x", true]}}"#,
        "postStartCommand.a[1]",
    );
    // Validation errors point back at the command's origin.
    let e = dev_error(
        &format!(
            r#"{{"onCreateCommand": "ok", "postCreateCommand": {{"big": {:?}}}}}"#,
            "x".repeat(8193)
        ),
        "postCreateCommand.big",
    );
    assert_eq!(e.message, "is 8193 bytes; the limit is 8192");
    dev_error(r#"{"postCreateCommand": "a\u0000b"}"#, "postCreateCommand");
}

#[test]
fn forwarded_ports() {
    let (m, warnings) = dev(r#"{"image": "runtime", "forwardPorts": [1, "5000", "localhost:3000", "127.0.0.1:3001", "db:5432"]}"#).unwrap();
    let ports: Vec<u16> = m.ports.iter().map(|p| p.port).collect();
    assert_eq!(ports, [1, 5000, 3000, 3001, 5432]);
    assert_eq!(
        warnings,
        [warning(
            "forwardPorts[4]",
            "\"db:5432\" forwards a port of host \"db\"; sessions serve only their own ports, so port 5432 of the session is used"
        )]
    );
    for (ports, field, fragment) in [
        ("[22]", "forwardPorts[0]", "22 is reserved"),
        ("[3000, 7070]", "forwardPorts[1]", "7070 is reserved"),
        ("[0]", "forwardPorts[0]", "0 is not a port"),
        ("[70000]", "forwardPorts[0]", "70000 is not a port"),
        ("[-1]", "forwardPorts[0]", "-1 is not a port"),
        ("[3.5]", "forwardPorts[0]", "3.5 is not a port"),
        ("[\"web\"]", "forwardPorts[0]", "\"web\" is not a port"),
        ("[\"localhost:\"]", "forwardPorts[0]", "is not a port"),
        (
            "[3000, \"localhost:3000\"]",
            "forwardPorts[1]",
            "port 3000 is already listed",
        ),
        (
            "[true]",
            "forwardPorts[0]",
            "must be a number or \"host:port\", not a boolean",
        ),
        ("3000", "forwardPorts", "must be an array"),
    ] {
        let e = dev_error(&format!(r#"{{"forwardPorts": {ports}}}"#), field);
        assert!(e.message.contains(fragment), "{ports}: {e}");
    }
    let many: Vec<String> = (3000..3021).map(|p| p.to_string()).collect();
    dev_error(
        &format!(r#"{{"forwardPorts": [{}]}}"#, many.join(",")),
        "forwardPorts",
    );
}

#[test]
fn environment() {
    let (m, warnings) = dev(r#"{
        "image": "runtime",
        "containerEnv": {"A": "container", "B": "b"},
        "remoteEnv": {"A": "remote", "P": "${containerEnv:PATH}:/opt/bin", "GONE": null}
    }"#)
    .unwrap();
    assert_eq!(
        m.env,
        BTreeMap::from([
            ("A".into(), "remote".into()),
            ("B".into(), "b".into()),
            ("P".into(), "${containerEnv:PATH}:/opt/bin".into()),
        ])
    );
    assert_eq!(
        warnings,
        [
            warning(
                "remoteEnv",
                "remoteEnv is applied to the whole container, not only to remote processes"
            ),
            warning(
                "remoteEnv.GONE",
                "unsetting a variable is not supported; ignored"
            ),
            warning(
                "remoteEnv.P",
                "variable substitution (${...}) is not supported; the value is used as written"
            ),
        ]
    );
    dev_error(
        r#"{"containerEnv": {"BURSTFLARE_X": "1"}}"#,
        "containerEnv.BURSTFLARE_X",
    );
    dev_error(r#"{"remoteEnv": {"1X": "1"}}"#, "remoteEnv.1X");
    dev_error(r#"{"containerEnv": {"A": null}}"#, "containerEnv.A");
    dev_error(r#"{"containerEnv": {"A": 1}}"#, "containerEnv.A");
    dev_error(r#"{"containerEnv": ["A=1"]}"#, "containerEnv");
    // A remoteEnv value replacing a containerEnv one is blamed on remoteEnv.
    dev_error(
        &format!(
            r#"{{"containerEnv": {{"A": "1"}}, "remoteEnv": {{"A": {:?}}}}}"#,
            "v".repeat(4097)
        ),
        "remoteEnv.A",
    );
}

#[test]
fn users_customizations_and_other_keys() {
    let (m, warnings) = dev(
        r#"{
        "$schema": "https://raw.githubusercontent.com/devcontainers/spec/main/schemas/devContainer.schema.json",
        "name": "everything",
        "image": "runtime",
        "remoteUser": "dev",
        "containerUser": "root",
        "customizations": {
            "vscode": {"settings": {"editor.tabSize": 2}, "extensions": []},
            "codespaces": {"openFiles": ["README.md"]}
        },
        "mounts": [], "runArgs": ["--init"], "capAdd": ["SYS_PTRACE"], "privileged": true,
        "securityOpt": [], "init": true, "shutdownAction": "none",
        "workspaceFolder": "/workspaces/x", "workspaceMount": "",
        "hostRequirements": {"cpus": 4}, "portsAttributes": {"3000": {"label": "app"}},
        "otherPortsAttributes": {}, "frobnicate": 1
    }"#,
    )
    .unwrap();
    assert!(m.editor);
    let mut expected = vec![
        warning(
            "containerUser",
            "sessions run as \"dev\"; containerUser \"root\" was ignored",
        ),
        warning(
            "customizations.codespaces",
            "customizations for codespaces are not supported and were ignored",
        ),
        warning(
            "customizations.vscode.settings",
            "settings are not applied to the browser editor",
        ),
    ];
    for key in [
        "capAdd",
        "frobnicate",
        "hostRequirements",
        "init",
        "mounts",
        "otherPortsAttributes",
        "portsAttributes",
        "privileged",
        "runArgs",
        "securityOpt",
        "shutdownAction",
        "workspaceFolder",
        "workspaceMount",
    ] {
        expected.push(if key == "frobnicate" {
            warning(key, "unknown key \"frobnicate\" was ignored")
        } else {
            warning(key, &format!("{key} is not supported and was ignored"))
        });
    }
    assert_eq!(warnings, expected);

    let (m, warnings) =
        dev(r#"{"image": "runtime", "customizations": {"vscode": {}}, "remoteUser": 0}"#).unwrap();
    assert!(m.editor);
    assert_eq!(
        warnings,
        [warning(
            "remoteUser",
            "sessions run as \"dev\"; remoteUser 0 was ignored"
        )]
    );
    let (m, _) = dev(r#"{"image": "runtime", "customizations": {"jetbrains": {}}}"#).unwrap();
    assert!(!m.editor);
    dev_error(r#"{"customizations": []}"#, "customizations");
    dev_error(r#"{"features": []}"#, "features");
}

#[test]
fn json_errors() {
    let e = dev_error(
        "{\n  \"image\": \"runtime\"\n  \"name\": \"x\"\n}",
        "(json)",
    );
    assert!(e.message.contains("line 3"), "{e}");
    let e = dev_error("{\n /* never closed\n}", "(json)");
    assert_eq!(e.message, "line 2: a /* comment is not closed");
    let e = dev_error("[]", "(json)");
    assert_eq!(e.message, "the top level must be an object");
    dev_error("", "(json)");
    dev_error("{,}", "(json)");
    dev_error("[1,,]", "(json)");
    dev_error(r#"{"forwardPorts": [,]}"#, "(json)");
    let big = format!("{{\"name\": {:?}}}", "x".repeat(MAX_MANIFEST_BYTES));
    let e = dev_error(&big, "(json)");
    assert!(e.message.contains("the limit is 65536"), "{e}");
}

#[test]
fn comments_and_commas_inside_strings_stay() {
    let (m, _) = dev(r#"{"image": "runtime", "containerEnv": {
            "A": "// not a comment",
            "B": "/* nor this */",
            "C": "a,}",
            "D": "esc \\\" // still string, ]",
            "E": "\\\\", // a backslash, then the comment
        }}"#)
    .unwrap();
    assert_eq!(m.env["A"], "// not a comment");
    assert_eq!(m.env["B"], "/* nor this */");
    assert_eq!(m.env["C"], "a,}");
    assert_eq!(m.env["D"], "esc \\\" // still string, ]");
    assert_eq!(m.env["E"], "\\\\");
}
