//! Records written before the fusion variants were types, brought to today's layout so that
//! trained runs keep loading.
//!
//! Until 2026-12-07 a [`miga_fusion::Cmtf`] record held `cls`, `cross_layers` and
//! `joint_layers` side by side, and an [`miga_fusion::InterFusion`] record optional `face` and
//! `context` streams (each with an optional `head`) beside the modality embeddings and optional
//! `gate`, `fused_norm` and `head`; the variant was whichever parts were present.
//! [`upgrade_record`] rewrites those maps of a record in Burn's named MessagePack (as run
//! folders hold them, [`super::RunRecorder`]) into the [`miga_fusion::CmtfLayers`] and
//! [`miga_fusion::InterFusionStreams`] layout; the tensors are not touched. The parts' field
//! names are the fusion modules'; the enum layout is rmp-serde's (`{"Variant": value}`).

use rmpv::Value;

/// Rewrites every old-layout CMTF and InterFusion record inside `record` (at any depth) into
/// today's layout; returns how many it rewrote (0: nothing was old).
pub fn upgrade_record(record: &mut Value) -> usize {
    match record {
        Value::Map(entries) => {
            // The parts first: an upgraded map is not looked into again.
            let parts = entries
                .iter_mut()
                .map(|(_, value)| upgrade_record(value))
                .sum::<usize>();
            parts + usize::from(upgrade_cmtf(entries) || upgrade_interfusion(entries))
        }
        Value::Array(items) => items.iter_mut().map(upgrade_record).sum(),
        _ => 0,
    }
}

type Entries = Vec<(Value, Value)>;

/// Takes the entries named `names` out of `entries`, if all are there.
fn take_all<const N: usize>(entries: &mut Entries, names: [&str; N]) -> Option<[Value; N]> {
    if !names.iter().all(|name| position(entries, name).is_some()) {
        return None;
    }
    Some(names.map(|name| {
        let i = position(entries, name).expect("checked above");
        entries.remove(i).1
    }))
}

fn position(entries: &Entries, name: &str) -> Option<usize> {
    entries
        .iter()
        .position(|(key, _)| key.as_str() == Some(name))
}

/// A struct record from its fields.
fn record<const N: usize>(fields: [(&str, Value); N]) -> Value {
    Value::Map(
        fields
            .into_iter()
            .map(|(name, value)| (Value::from(name), value))
            .collect(),
    )
}

/// The record of enum variant `variant` holding `value` (serde's external tagging, as
/// rmp-serde writes it).
fn variant(variant: &str, value: Value) -> Value {
    record([(variant, value)])
}

fn upgrade_cmtf(entries: &mut Entries) -> bool {
    let Some([cls, cross, joint]) = take_all(entries, ["cls", "cross_layers", "joint_layers"])
    else {
        return false;
    };
    let layers = if cls.is_nil() {
        variant("Cross", record([("blocks", cross)]))
    } else {
        variant("Joint", record([("cls", cls), ("blocks", joint)]))
    };
    entries.push(("layers".into(), layers));
    true
}

fn upgrade_interfusion(entries: &mut Entries) -> bool {
    // An old stream had a `head` field, present or not; today's branches have none (so the
    // full model's record, which has the old field names, is not taken for an old one).
    let old_stream = |name: &str| {
        position(entries, name).is_some_and(|i| match &entries[i].1 {
            Value::Map(fields) => position(fields, "head").is_some(),
            _ => false,
        })
    };
    if !old_stream("face") && !old_stream("context") {
        return false;
    }
    let names = [
        "face",
        "context",
        "modality",
        "inter_layers",
        "gate",
        "fused_norm",
        "head",
    ];
    let Some(
        [
            face,
            context,
            modality,
            inter_layers,
            gate,
            fused_norm,
            head,
        ],
    ) = take_all(entries, names)
    else {
        return false;
    };
    // An old stream record is today's branch with an optional `head` beside its parts.
    let split = |stream: Value| -> (Value, Value) {
        let Value::Map(mut fields) = stream else {
            return (stream, Value::Nil);
        };
        let head = match position(&fields, "head") {
            Some(i) => fields.remove(i).1,
            None => Value::Nil,
        };
        (Value::Map(fields), head)
    };
    let classifier = |stream: Value| {
        let (branch, head) = split(stream);
        record([("branch", branch), ("head", head)])
    };
    let single = |stream: Value, modality: Value| {
        let (branch, head) = split(stream);
        record([("branch", branch), ("head", head), ("modality", modality)])
    };
    let streams = match (face.is_nil(), context.is_nil(), gate.is_nil()) {
        (false, false, false) => variant(
            "Full",
            record([
                ("face", split(face).0),
                ("context", split(context).0),
                ("modality", modality),
                ("inter_layers", inter_layers),
                ("gate", gate),
                ("fused_norm", fused_norm),
                ("head", head),
            ]),
        ),
        (false, false, true) => variant(
            "LateFusion",
            record([
                ("face", classifier(face)),
                ("context", classifier(context)),
                ("modality", modality),
            ]),
        ),
        (false, true, _) => variant("FaceOnly", single(face, modality)),
        (true, _, _) => variant("ContextOnly", single(context, modality)),
    };
    entries.push(("streams".into(), streams));
    true
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map<const N: usize>(fields: [(&str, Value); N]) -> Value {
        record(fields)
    }

    #[test]
    fn old_layouts_become_variants_and_new_ones_stay() {
        let tensor = || map([("param", Value::from(1))]);
        let mut cmtf = map([
            ("head", tensor()),
            ("cls", tensor()),
            ("cross_layers", Value::Array(vec![])),
            ("joint_layers", Value::Array(vec![tensor()])),
        ]);
        let mut whole = map([("fusion", cmtf.clone()), ("norm", tensor())]);
        assert_eq!(upgrade_record(&mut cmtf), 1);
        let joint = variant(
            "Joint",
            map([("cls", tensor()), ("blocks", Value::Array(vec![tensor()]))]),
        );
        assert_eq!(cmtf, map([("head", tensor()), ("layers", joint.clone())]));
        assert_eq!(upgrade_record(&mut whole), 1);
        assert_eq!(
            upgrade_record(&mut whole),
            0,
            "an upgraded record is left alone"
        );

        let branch = |head: Value| map([("projection", tensor()), ("head", head)]);
        let mut late = map([
            ("face", branch(tensor())),
            ("context", branch(tensor())),
            ("modality", tensor()),
            ("inter_layers", Value::Array(vec![])),
            ("gate", Value::Nil),
            ("fused_norm", Value::Nil),
            ("head", Value::Nil),
        ]);
        assert_eq!(upgrade_record(&mut late), 1);
        let classifier = map([
            ("branch", map([("projection", tensor())])),
            ("head", tensor()),
        ]);
        let streams = variant(
            "LateFusion",
            map([
                ("face", classifier.clone()),
                ("context", classifier),
                ("modality", tensor()),
            ]),
        );
        assert_eq!(late, map([("streams", streams)]));
        let mut again = late.clone();
        assert_eq!(
            upgrade_record(&mut again),
            0,
            "an upgraded record is left alone"
        );
        let mut full = map([
            ("face", branch(Value::Nil)),
            ("context", branch(Value::Nil)),
            ("modality", tensor()),
            ("inter_layers", Value::Array(vec![tensor()])),
            ("gate", tensor()),
            ("fused_norm", tensor()),
            ("head", tensor()),
        ]);
        assert_eq!(upgrade_record(&mut full), 1);
        assert_eq!(
            upgrade_record(&mut full),
            0,
            "today's full model has the old names"
        );
    }
}
