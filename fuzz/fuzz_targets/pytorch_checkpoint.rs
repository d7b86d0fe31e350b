//! A PyTorch checkpoint loaded strictly into 2s-AGCN (the committed Kinetics fixture's network). The input goes through a file, as miga reads it; the parser is the one
//! `tests/fuzz.rs` names `pytorch_checkpoint`, and its seeds are that test's (`MIGA_FUZZ_CORPUS`).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let dir = std::env::temp_dir().join(format!("miga-fuzz-{}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    let path = &dir.join("joint.pt");
    if std::fs::write(path, data).is_err() {
        return;
    }
    static MODEL: std::sync::OnceLock<miga_backbones::agcn::Agcn<burn::backend::Flex>> =
        std::sync::OnceLock::new();
    let model = MODEL.get_or_init(|| {
        let fixture = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../crates/miga-backbones/tests/fixtures/agcn/kinetics/joint.pt");
        miga_backbones::agcn::AgcnConfig::load(
            fixture,
            miga_backbones::agcn::Graph::kinetics(),
            &Default::default(),
        )
        .expect("the fixture loads")
    });
    let _ = model.clone().load_pytorch(path);
});
