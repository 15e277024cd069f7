//! Lumos's connector SDK (connector-py, installed by `scripts/control-plane build`): its pydantic
//! models judge every connector answer the tests get.

use std::io::Write as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use serde_json::{Value, json};

use super::repo;

/// The connector-py virtualenv's python (installed by `scripts/control-plane build`).
pub fn sdk_python() -> String {
    static PY: OnceLock<String> = OnceLock::new();
    PY.get_or_init(|| {
        let bin = |arg: &str| {
            let out = Command::new(repo().join("scripts/control-plane")).arg(arg).output().unwrap();
            String::from_utf8(out.stdout).unwrap().trim().to_string()
        };
        let py = format!("{}/python", bin("connector-bin"));
        if !Path::new(&py).exists() {
            let st = Command::new(repo().join("scripts/control-plane")).arg("build").status().unwrap();
            assert!(st.success(), "scripts/control-plane build failed");
        }
        py
    })
    .clone()
}

/// Validates each answer with the SDK's model of that name (`ErrorResponse` for errors), in one
/// python process; panics naming every answer the SDK refuses.
pub fn validate(answers: &[(&str, &Value)]) {
    const SCRIPT: &str = r#"
import sys, json
import connector_sdk_types.generated as g
bad = 0
for line in sys.stdin:
    model, text = line.rstrip("\n").split("\t", 1)
    try:
        # An ActivityRecord's activity_type is the spec's anyOf(ActivityType, string): a plain
        # string on the wire (what the SDK's own to_json writes), which only the SDK's from_json
        # reads (pydantic's model_validate_json wants the wrapper object).
        if model in ("ListActivityRecordsResponse",):
            parsed = getattr(g, model).from_json(text)
            assert parsed is not None, "from_json read nothing"
        else:
            parsed = getattr(g, model).model_validate_json(text)
        if model == "ErrorResponse":
            # The metadata must be what the SDK itself derives from the code.
            from connector_sdk_types.errors.metadata import build_metadata
            want = build_metadata(g.ConnectorErrorCode(parsed.error.error_code.value)).model_dump(exclude_none=True, mode="json")
            got = json.loads(text)["error"]["error_metadata"]
            assert got == want, f"error_metadata {got} is not the SDK's {want}"
    except Exception as e:
        bad += 1
        print(f"{model}: {e}\n{text[:400]}", file=sys.stderr)
sys.exit(1 if bad else 0)
"#;
    let mut child = Command::new(sdk_python())
        .args(["-c", SCRIPT])
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("running the SDK's python");
    {
        let mut stdin = child.stdin.take().unwrap();
        for (model, answer) in answers {
            let model = if answer.get("is_error") == Some(&json!(true)) { "ErrorResponse" } else { model };
            writeln!(stdin, "{model}\t{}", serde_json::to_string(answer).unwrap()).unwrap();
        }
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "the SDK refused answers:\n{}", String::from_utf8_lossy(&out.stderr));
}
