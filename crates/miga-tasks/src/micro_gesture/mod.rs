//! The micro-gesture task (32 classes, per clip): extraction of backbone features, training
//! of the fusion model on them or of the whole network end to end, evaluation, and the pipeline
//! from raw clips to classes. The networks themselves are in [`crate::models::micro_gesture`].

mod end_to_end;
mod evaluate;
mod extract;
pub mod online;
mod pipeline;
mod train;

pub use crate::models::micro_gesture::{
    MICRO_GESTURE, MICRO_GESTURE_END_TO_END, MicroGestureExtraction, Streams, TrainConfig,
};
pub(crate) use end_to_end::load_end_to_end;
pub use end_to_end::{RawClipBatcher, train_end_to_end};
pub use evaluate::{ClassAccuracy, Evaluation, TrainedRun, evaluate, submission_csv};
pub use extract::extract_micro_gesture;
pub use pipeline::{ClipPrediction, MicroGesturePipeline};
pub use train::train_micro_gesture;
