//! Training killed while writing a checkpoint resumes from the last complete one and
//! reproduces the uninterrupted run bit for bit; corrupt checkpoints are skipped with a
//! message; a checkpoint whose optimizer state does not fit the model is a typed error naming
//! `optimizer.safetensors`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use sha2::{Digest, Sha256};
use webclip::train::checkpoint::CRASH_ENV;

/// Every file of a checkpoint, in the order they are written.
const FILES: [&str; 7] = [
    "config.json",
    "model.safetensors",
    "tokenizer.json",
    "preprocessor_config.json",
    "optimizer.safetensors",
    "trainer_state.json",
    "manifest.json",
];

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("webclip-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// A short synthetic training run (checkpoints after steps 2 and 4 of 6).
fn train(out: &Path, resume: Option<&Path>, crash: Option<&str>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_webclip"));
    command.args([
        "train",
        "--steps",
        "6",
        "--batch-size",
        "8",
        "--warmup",
        "2",
    ]);
    command.args([
        "--checkpoint-every",
        "2",
        "--eval-every",
        "0",
        "--eval-images",
        "4",
    ]);
    command.arg("--out").arg(out);
    if let Some(dir) = resume {
        command.arg("--resume").arg(dir);
    }
    command.env_remove(CRASH_ENV);
    if let Some(suffix) = crash {
        command.env(CRASH_ENV, suffix);
    }
    command.output().expect("run webclip")
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn weights(out: &Path) -> Vec<u8> {
    std::fs::read(out.join("model.safetensors")).expect("the run wrote its model")
}

#[test]
fn a_kill_during_any_checkpoint_write_resumes_bit_for_bit() {
    let baseline_dir = scratch("crash-baseline");
    let baseline = train(&baseline_dir, None, None);
    assert!(baseline.status.success(), "{}", stderr(&baseline));
    let expected = weights(&baseline_dir);
    let checkpoints = baseline_dir.join("checkpoint");
    assert!(checkpoints.join("step-00000002/manifest.json").is_file());
    assert!(checkpoints.join("step-00000004/manifest.json").is_file());

    for file in FILES {
        let out = scratch("crash-run");
        let crashed = train(&out, None, Some(&format!("step-00000004/{file}")));
        assert!(
            !crashed.status.success(),
            "the run was meant to abort writing {file}"
        );
        assert!(!out.join("model.safetensors").exists());
        assert!(
            !out.join("checkpoint/step-00000004").exists(),
            "{file}: a partial checkpoint is never in place"
        );

        let resumed = train(&out, Some(&out.join("checkpoint")), None);
        let log = stderr(&resumed);
        assert!(
            resumed.status.success(),
            "resume after a crash in {file}: {log}"
        );
        assert!(
            log.contains("step-00000002") && log.contains("(step 2)"),
            "{file}: {log}"
        );
        assert!(
            weights(&out) == expected,
            "{file}: the resumed run differs from the uninterrupted one"
        );
        std::fs::remove_dir_all(&out).unwrap();
    }

    // A corrupt newest checkpoint is skipped with a message; the previous one is used.
    let optimizer = checkpoints.join("step-00000004/optimizer.safetensors");
    let mut bytes = std::fs::read(&optimizer).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 0x40;
    std::fs::write(&optimizer, bytes).unwrap();
    let out = scratch("crash-corrupt");
    let resumed = train(&out, Some(&checkpoints), None);
    let log = stderr(&resumed);
    assert!(resumed.status.success(), "{log}");
    assert!(
        log.contains("skipping checkpoint") && log.contains("SHA-256"),
        "{log}"
    );
    assert!(
        weights(&out) == expected,
        "resumed from step 2 after skipping step 4"
    );
    std::fs::remove_dir_all(&out).unwrap();

    // A manifest-consistent checkpoint whose optimizer moments do not fit the model.
    let step2 = checkpoints.join("step-00000002");
    let moments = webclip::weights::safetensors::serialize(&[
        ("logit_scale.exp_avg".into(), "F32", vec![3], vec![0; 12]),
        ("logit_scale.exp_avg_sq".into(), "F32", vec![3], vec![0; 12]),
    ]);
    rewrite_with_manifest(&step2, "optimizer.safetensors", &moments);
    let out = scratch("crash-moments");
    let resumed = train(&out, Some(&step2), None);
    let log = stderr(&resumed);
    assert!(!resumed.status.success());
    assert!(
        log.contains("E_CHECKPOINT")
            && log.contains("optimizer.safetensors")
            && log.contains("logit_scale"),
        "{log}"
    );
    let _ = std::fs::remove_dir_all(&out);
    std::fs::remove_dir_all(&baseline_dir).unwrap();
}

/// Replace a checkpoint file and update its manifest entry to match.
fn rewrite_with_manifest(dir: &Path, name: &str, bytes: &[u8]) {
    std::fs::write(dir.join(name), bytes).unwrap();
    let path = dir.join("manifest.json");
    let mut manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    for entry in manifest["files"].as_array_mut().unwrap() {
        if entry["name"] == name {
            entry["bytes"] = bytes.len().into();
            let digest: String = Sha256::digest(bytes)
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect();
            entry["sha256"] = digest.into();
        }
    }
    std::fs::write(&path, serde_json::to_vec(&manifest).unwrap()).unwrap();
}
