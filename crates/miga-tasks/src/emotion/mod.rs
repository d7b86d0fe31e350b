//! The emotion task (Win/Lose per video): SwinFace face embeddings and MViTv2 context
//! embeddings extracted per video ([`extract_emotion`]), InterFusion trained on them
//! ([`train_emotion`]), and its evaluation (accuracy, F1, AUROC) and per-video predictions.
//! The network itself is in [`crate::models::emotion`].

mod evaluate;
mod extract;
mod train;

pub use crate::models::emotion::{
    EMOTION, EmotionExtractStreams, EmotionExtraction, EmotionStreams, EmotionTrainConfig,
};
pub use evaluate::{EmotionEvaluation, EmotionRun, emotion_csv, evaluate_emotion};
pub use extract::extract_emotion;
pub use train::train_emotion;
