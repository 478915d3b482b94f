//! `pgsink convert`: messages in, COPY text out — and that text loaded into PostgreSQL.

use std::time::Duration;

use serde_json::Value;

use crate::harness::*;

const SEED: &str = r#"{"identity":71293145,"location":{"latitude":51.5009449,"longitude":-2.4773414},"acceleration":[0.01,0.0,0.0]}"#;
const SEED_PATHS: &str = "/@identity,/@location/@latitude,/@location/@longitude,/@acceleration/#0";
const SEED_ROW: &str = "71293145\t51.5009449\t-2.4773414\t0.01\n";

/// A complete TOML configuration for `convert` (the database is never contacted).
fn config(columns: &[&str], parse: &str, extra: &str) -> String {
    format!(
        "topics = \"accelerometer\"\n\
         db.host = \"127.0.0.1:5432\"\n\
         db.database = \"telemetry\"\n\
         db.username = \"sink\"\n\
         db.table = \"accelerometer\"\n\
         db.columns = {}\n\
         db.json.parse = {}\n\
         {extra}\n",
        toml_list(columns),
        toml_str(parse)
    )
}

const T: Duration = Duration::from_secs(60);

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn convert_seed_example() {
    let ctx = Ctx::new("convert_seed_example");
    let cfg = ctx.write(
        "c.toml",
        config(&["device", "lat", "lon", "x"], SEED_PATHS, ""),
    );
    let input = format!("{SEED}\n{{\"identity\":2}}\n");
    let inp = ctx.write("in.jsonl", &input);
    let out = ctx.run_pgsink(
        &[
            "convert",
            "--config",
            cfg.to_str().unwrap(),
            "--input",
            inp.to_str().unwrap(),
        ],
        b"",
        T,
    );
    let stderr = text(&out.stderr);
    assert_eq!(
        text(&out.stdout),
        format!("{SEED_ROW}2\t\\N\t\\N\t\\N\n"),
        "stdout of convert --input (stderr: {stderr})"
    );
    assert!(
        out.status.success(),
        "exit {} (stderr: {stderr})",
        out.status
    );
    assert!(
        !stderr.contains("line "),
        "no message failed, yet stderr reports one: {stderr}"
    );

    // The same through stdin.
    let out = ctx.run_pgsink(
        &["convert", "--config", cfg.to_str().unwrap()],
        input.as_bytes(),
        T,
    );
    assert_eq!(
        text(&out.stdout),
        format!("{SEED_ROW}2\t\\N\t\\N\t\\N\n"),
        "stdout of convert on stdin (stderr: {})",
        text(&out.stderr)
    );
    assert!(out.status.success(), "exit {}", out.status);
}

/// What `cargo install --path host` installs is this binary alone: copied to a folder of its
/// own and run from there, with a fresh HOME and no repository around, it reports its version,
/// lists every command in `--help`, and converts with the bundled plugin embedded in it.
#[test]
fn packaging_binary_is_self_contained() {
    let ctx = Ctx::new("packaging_binary_is_self_contained");
    let bin_dir = ctx.dir().join("bin");
    let home = ctx.dir().join("home");
    std::fs::create_dir_all(&bin_dir).expect("bin folder");
    std::fs::create_dir_all(&home).expect("home folder");
    let exe = bin_dir.join("pgsink");
    std::fs::copy(PGSINK, &exe).expect("copy the pgsink binary");
    let run = |args: &[&str], stdin: &[u8]| {
        let mut cmd = std::process::Command::new(&exe);
        cmd.args(args)
            .current_dir(&home)
            .env_clear()
            .env("HOME", &home)
            .env("PATH", "/usr/bin:/bin");
        run_with_timeout(cmd, stdin, T)
    };
    let out = run(&["--version"], b"");
    assert_eq!(
        text(&out.stdout).trim(),
        format!("pgsink {}", env!("CARGO_PKG_VERSION")),
        "pgsink --version"
    );
    let out = run(&["--help"], b"");
    let help = text(&out.stdout);
    for command in ["run", "check", "convert", "sql", "dlq", "demo"] {
        assert!(
            help.lines()
                .any(|l| l.trim_start().starts_with(&format!("{command} "))),
            "pgsink --help should list `{command}`:\n{help}"
        );
    }
    let cfg = home.join("c.toml");
    std::fs::write(&cfg, config(&["device", "lat", "lon", "x"], SEED_PATHS, ""))
        .expect("write config");
    let out = run(&["convert", "--config", "c.toml"], SEED.as_bytes());
    assert_eq!(
        text(&out.stdout),
        SEED_ROW,
        "convert with the embedded plugin (stderr: {})",
        text(&out.stderr)
    );
    assert!(out.status.success(), "exit {}", out.status);
}

#[test]
fn convert_bad_lines_are_reported_and_skipped() {
    let ctx = Ctx::new("convert_bad_lines");
    let cfg = ctx.write(
        "c.toml",
        config(&["device", "lat", "lon", "x"], SEED_PATHS, ""),
    );
    let mut input: Vec<u8> = Vec::new();
    input.extend_from_slice(SEED.as_bytes()); // line 1: good
    input.extend_from_slice(b"\n{\"identity\": 3, \"location\": \n"); // line 2: truncated JSON
    input.extend_from_slice(b"{\"identity\":4,\"acceleration\":[1.5]}\n"); // line 3: good
    input.extend_from_slice(b"{\"identity\":5,\"name\":\"caf\xe9\"}\n"); // line 4: not UTF-8
    input.extend_from_slice(b"{\"identity\":\"a\\u0000b\"}\n"); // line 5: NUL in a selected string
    input.extend_from_slice(b"{\"identity\":6}\n"); // line 6: good
    for via_stdin in [false, true] {
        let out = if via_stdin {
            ctx.run_pgsink(&["convert", "--config", cfg.to_str().unwrap()], &input, T)
        } else {
            let inp = ctx.write("in.jsonl", &input);
            ctx.run_pgsink(
                &[
                    "convert",
                    "--config",
                    cfg.to_str().unwrap(),
                    "--input",
                    inp.to_str().unwrap(),
                ],
                b"",
                T,
            )
        };
        let stderr = text(&out.stderr);
        let how = if via_stdin { "stdin" } else { "--input" };
        assert_eq!(
            text(&out.stdout),
            format!("{SEED_ROW}4\t\\N\t\\N\t1.5\n6\t\\N\t\\N\t\\N\n"),
            "{how}: the good lines must still be converted (stderr: {stderr})"
        );
        assert_eq!(
            out.status.code(),
            Some(1),
            "{how}: exit status must be 1 when a message failed (stderr: {stderr})"
        );
        for (line, reason_word) in [(2, "JSON"), (4, "UTF-8"), (5, "")] {
            let prefix = format!("line {line}: ");
            let found = stderr
                .lines()
                .find(|l| l.contains(&prefix))
                .unwrap_or_else(|| panic!("{how}: stderr does not report `{prefix}…`: {stderr}"));
            let reason = &found[found.find(&prefix).unwrap() + prefix.len()..];
            assert!(
                !reason.trim().is_empty(),
                "{how}: no reason given for line {line}: {found}"
            );
            assert!(
                reason.to_lowercase().contains(&reason_word.to_lowercase()),
                "{how}: the reason for line {line} should mention {reason_word:?}: {found}"
            );
        }
        for good in [1, 3, 6] {
            assert!(
                !stderr.contains(&format!("line {good}:")),
                "{how}: good line {good} reported as failed: {stderr}"
            );
        }
    }
}

/// Runs `pgsink convert` on the seed lines with config `cfg`: it must fail and convert nothing.
/// Returns its stderr.
fn convert_fails(ctx: &Ctx, cfg: &std::path::Path) -> String {
    let out = ctx.run_pgsink(
        &["convert", "--config", cfg.to_str().unwrap()],
        SEED.as_bytes(),
        T,
    );
    let stderr = text(&out.stderr);
    assert!(!out.status.success(), "must fail (stderr: {stderr})");
    assert!(
        out.stdout.is_empty(),
        "nothing may be converted: {}",
        text(&out.stdout)
    );
    stderr
}

#[test]
fn convert_count_mismatch_is_a_config_error() {
    let ctx = Ctx::new("convert_count_mismatch");
    let cfg = ctx.write(
        "c.toml",
        config(
            &["device", "lat", "lon", "x"],
            "/@identity,/@location/@latitude,/@location/@longitude",
            "",
        ),
    );
    let stderr = convert_fails(&ctx, &cfg);
    assert!(
        stderr.contains("3 parse paths") && stderr.contains("4 columns"),
        "stderr should say `db.json.parse has 3 parse paths but db.columns lists 4 columns`: {stderr}"
    );
    assert!(
        stderr.contains("c.toml"),
        "stderr should name the file: {stderr}"
    );
}

#[test]
fn convert_unknown_key_is_named() {
    let ctx = Ctx::new("convert_unknown_key");
    let cfg = ctx.write(
        "c.toml",
        config(
            &["device", "lat", "lon", "x"],
            SEED_PATHS,
            "db.tabel = \"typo\"",
        ),
    );
    let stderr = convert_fails(&ctx, &cfg);
    assert!(
        stderr.contains("tabel"),
        "stderr should name the unknown key db.tabel: {stderr}"
    );
}

// ------------------------------------------------------------------------------------------
// convert → COPY → read back
// ------------------------------------------------------------------------------------------

const RT_COLUMNS: [&str; 8] = ["id", "big", "txt", "obj", "f", "n", "missing", "clé"];
const RT_PATHS: &str = "/@id,/@big,/@txt,/@obj,/@f,/@n,/@missing/@deeper,/@clé";

/// Messages and the exact text of their `big` number (serde_json cannot hold it).
fn roundtrip_messages() -> Vec<(String, Option<String>)> {
    let mut m: Vec<(String, Option<String>)> = vec![
        (
            r#"{"id": 1, "big": 12345678901234567890, "txt": "tab\there\nnew line\\back \"q\" caf\u00e9 \ud83d\ude00 \/ \b\f\r end", "obj": {"a": [1, 2.50, {"b": "x\ty \u00e9"}], "c": null, "d": true}, "f": 1.5E+300, "n": null, "cl\u00e9": "k1"}"#.into(),
            Some("12345678901234567890".into()),
        ),
        (
            r#"{"id":2,"big":-99999999999999999999,"txt":"日本語 ü ß \\n is not a newline \\N","obj":[],"f":-0.0,"clé":"raw é"}"#.into(),
            Some("-99999999999999999999".into()),
        ),
        (
            r#"{"id":3,"big":123456789012345678901234567890,"txt":"","obj":{"nested":{"deep":{"deeper":[[["x"]]]}}},"f":3,"n":"\\N","missing":{"deeper":null}}"#.into(),
            Some("123456789012345678901234567890".into()),
        ),
        (
            r#"{"id":4,"big":0,"txt":"ctl \u0001\u001f\u007f end","obj":{"emoji":"\ud83d\ude00","e":"\u00e9","q":"\"","bs":"\\"},"f":-2.5e-10,"n":"a\tb","missing":"not an object"}"#.into(),
            Some("0".into()),
        ),
        (
            r#"  {"id":5,"big":1,"txt":"  spaces around  ","obj":12.50,"f":1e3,"n":"x"}  "#.into(),
            Some("1".into()),
        ),
        (r#"{"id":6}"#.into(), None),
    ];
    // Strings over a wide range of characters, serialized by serde_json.
    let alphabet: Vec<char> = (1u32..0x2ff)
        .chain([0x2028, 0x2029, 0xfeff, 0x1f600, 0x10ffff])
        .filter_map(char::from_u32)
        .collect();
    for id in 7u64..=60 {
        let s: String = (0..(id as usize % 23 + 1))
            .map(|k| alphabet[(id as usize * 37 + k * 101) % alphabet.len()])
            .chain(
                ['\t', '\\', '\n', '"', '\r']
                    .into_iter()
                    .skip(id as usize % 5),
            )
            .collect();
        let txt = serde_json::to_string(&s).unwrap();
        let obj =
            serde_json::to_string(&serde_json::json!({ "s": s, "arr": [s, id, null] })).unwrap();
        let big = format!("{}{:019}", id, id * 7_654_321);
        let f = format!("{}", id as f64 / 3.0);
        m.push((
            format!(r#"{{"id":{id},"big":{big},"txt":{txt},"obj":{obj},"f":{f},"n":{txt}}}"#),
            Some(big),
        ));
    }
    m
}

fn str_at(v: &Value, key: &str) -> Option<String> {
    v.get(key).and_then(|x| x.as_str()).map(str::to_string)
}

#[test]
fn roundtrip_postgres() {
    let ctx = Ctx::new("roundtrip_postgres");
    let pg = Pg::connect();
    let table = ctx.table_name();
    pg.batch(&format!(
        "DROP TABLE IF EXISTS public.{t}; CREATE TABLE public.{t} (id bigint, big numeric, txt text, obj jsonb, \
         f double precision, n text, missing text, \"clé\" text)",
        t = ident(&table)
    ));
    let cfg = ctx.write("c.toml", config(&RT_COLUMNS, RT_PATHS, ""));
    let msgs = roundtrip_messages();
    let mut input = String::new();
    for (line, _) in &msgs {
        input.push_str(line);
        input.push('\n');
    }
    let out = ctx.run_pgsink(
        &["convert", "--config", cfg.to_str().unwrap()],
        input.as_bytes(),
        T,
    );
    let stderr = text(&out.stderr);
    assert!(
        out.status.success(),
        "convert failed ({}): {stderr}",
        out.status
    );
    assert_eq!(
        out.stdout.iter().filter(|b| **b == b'\n').count(),
        msgs.len(),
        "one COPY line per message expected; stdout:\n{}",
        text(&out.stdout)
    );
    let cols: Vec<String> = RT_COLUMNS.iter().map(|c| ident(c)).collect();
    let n = pg.copy_in(
        &format!(
            "COPY public.{} ({}) FROM STDIN",
            ident(&table),
            cols.join(", ")
        ),
        out.stdout.clone(),
    );
    assert_eq!(n as usize, msgs.len());

    let rows = pg.query(
        &format!(
            "SELECT id, big::text, txt, obj::text, f, n, missing, \"clé\" FROM public.{} ORDER BY id",
            ident(&table)
        ),
        &[],
    );
    assert_eq!(rows.len(), msgs.len());
    let mut problems = Vec::new();
    for (row, (line, big)) in rows.iter().zip(&msgs) {
        let v: Value = serde_json::from_str(line).expect("test message is valid JSON");
        let id: Option<i64> = row.get(0);
        let got_big: Option<String> = row.get(1);
        let txt: Option<String> = row.get(2);
        let obj: Option<String> = row.get(3);
        let f: Option<f64> = row.get(4);
        let nn: Option<String> = row.get(5);
        let missing: Option<String> = row.get(6);
        let cle: Option<String> = row.get(7);
        let want_obj = v.get("obj").filter(|o| !o.is_null()).cloned();
        let got_obj: Option<Value> = obj
            .as_deref()
            .map(|s| serde_json::from_str(s).expect("jsonb text"));
        let checks = [
            ("id", id == v["id"].as_i64(), format!("{id:?}")),
            ("big", got_big == *big, format!("{got_big:?} vs {big:?}")),
            (
                "txt",
                txt == str_at(&v, "txt"),
                format!("{txt:?} vs {:?}", str_at(&v, "txt")),
            ),
            (
                "obj",
                got_obj == want_obj,
                format!("{got_obj:?} vs {want_obj:?}"),
            ),
            (
                "f",
                f == v.get("f").and_then(|x| x.as_f64()),
                format!("{f:?}"),
            ),
            (
                "n",
                nn == str_at(&v, "n"),
                format!("{nn:?} vs {:?}", str_at(&v, "n")),
            ),
            ("missing", missing.is_none(), format!("{missing:?}")),
            (
                "clé",
                cle == str_at(&v, "clé"),
                format!("{cle:?} vs {:?}", str_at(&v, "clé")),
            ),
        ];
        for (col, ok, detail) in checks {
            if !ok {
                problems.push(format!("message {line}: column {col}: {detail}"));
            }
        }
    }
    assert!(
        problems.is_empty(),
        "{} mismatches:\n{}",
        problems.len(),
        problems.join("\n")
    );
    pg.batch(&format!("DROP TABLE public.{}", ident(&table)));
}
