//! OpenPose skeletons: the raw per-frame JSON folders, the MiGA `<ID>_openpose.xlsx` tables and
//! the in-memory [`Skeleton`] sequence with person selection, subsets, normalisation,
//! interpolation and mirroring.

mod openpose;
mod sequence;
mod xlsx;

pub use openpose::{
    OpenPoseStats, PersonSelection, parse_openpose_frame, read_openpose_folder,
    read_openpose_folder_counted, read_openpose_frame, write_openpose_folder,
};
pub use sequence::{
    BODY, BodyFrame, FACE, LEFT_HAND, OPENPOSE_POINTS, RIGHT_HAND, Skeleton, mirror_permutation,
};
pub use xlsx::{parse_skeleton_xlsx, read_skeleton_xlsx, write_skeleton_xlsx};
