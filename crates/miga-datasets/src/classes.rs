//! The 32 micro-gesture classes and the per-video emotion label, in one place.
//!
//! iMiGUE codes its classes 1..31 (micro-gestures) and 99 (non-micro-gesture); models and the
//! MiGA challenge use indices 0..31, with 99 mapped to 31. [`MicroGesture`] converts between
//! the two and names each class.

use std::fmt;

/// Number of micro-gesture classes (31 micro-gestures and the non-micro-gesture class).
pub const NUM_CLASSES: usize = 32;

/// iMiGUE code of the non-micro-gesture class.
pub const NON_MICRO_GESTURE_CODE: u32 = 99;

const NAMES: [&str; NUM_CLASSES] = [
    "Turtle neck",
    "Bulging face, deep breath",
    "Touching hat",
    "Touching or scratching head",
    "Touching or scratching forehead",
    "Covering face",
    "Rubbing eyes",
    "Touching or scratching facial parts",
    "Touching ears",
    "Biting nails",
    "Touching jaw",
    "Touching or scratching neck",
    "Playing or adjusting hair",
    "Buckling button, pulling shirt collar, adjusting tie",
    "Touching or covering suprasternal notch",
    "Scratching back",
    "Folding arms",
    "Dusting off clothes",
    "Putting arms behind body",
    "Moving torso",
    "Sitting straightly",
    "Scratching or touching arms",
    "Rubbing or holding hands",
    "Crossing fingers",
    "Minaret gesture",
    "Playing or manipulating objects",
    "Holding back arms",
    "Head up",
    "Pressing lips",
    "Arms akimbo",
    "Shaking shoulders",
    "Non-micro-gesture (illustrative body language)",
];

/// A micro-gesture class, stored as its model index 0..31.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct MicroGesture(u8);

impl MicroGesture {
    /// The class of an iMiGUE code (1..31, or 99 for non-micro-gesture); `None` for any other.
    pub fn from_code(code: u32) -> Option<Self> {
        match code {
            1..=31 => Some(Self(code as u8 - 1)),
            NON_MICRO_GESTURE_CODE => Some(Self(31)),
            _ => None,
        }
    }

    /// The class of a model index (0..31); `None` for any other.
    pub fn from_index(index: usize) -> Option<Self> {
        (index < NUM_CLASSES).then_some(Self(index as u8))
    }

    /// Every class, in index order.
    pub fn all() -> impl Iterator<Item = Self> {
        (0..NUM_CLASSES as u8).map(Self)
    }

    /// The iMiGUE code (1..31, or 99).
    pub fn code(self) -> u32 {
        if self.0 == 31 {
            NON_MICRO_GESTURE_CODE
        } else {
            u32::from(self.0) + 1
        }
    }

    /// The model index (0..31), as the MiGA challenge numbers classes.
    pub fn index(self) -> usize {
        usize::from(self.0)
    }

    /// The class name as the iMiGUE paper's Figure 2 gives it (C1..C32, spelling corrected).
    pub fn name(self) -> &'static str {
        NAMES[self.index()]
    }
}

impl fmt::Display for MicroGesture {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.code(), self.name())
    }
}

/// The per-video emotion label: whether the player won or lost the match.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Outcome {
    /// Lost the match (negative emotional state); index 0.
    Lose,
    /// Won the match (positive emotional state); index 1.
    Win,
}

impl Outcome {
    /// Parses `Win` / `Lose` (any case).
    pub fn parse(text: &str) -> Option<Self> {
        match text.trim().to_ascii_lowercase().as_str() {
            "win" => Some(Self::Win),
            "lose" => Some(Self::Lose),
            _ => None,
        }
    }

    /// The model index: Lose 0, Win 1.
    pub fn index(self) -> usize {
        self as usize
    }

    /// The label as the annotation files write it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Win => "Win",
            Self::Lose => "Lose",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_map_to_indices_and_back() {
        assert_eq!(MicroGesture::from_code(1).unwrap().index(), 0);
        assert_eq!(MicroGesture::from_code(31).unwrap().index(), 30);
        assert_eq!(MicroGesture::from_code(99).unwrap().index(), 31);
        for code in [0, 32, 98, 100] {
            assert_eq!(MicroGesture::from_code(code), None, "code {code}");
        }
        for class in MicroGesture::all() {
            assert_eq!(MicroGesture::from_code(class.code()), Some(class));
            assert_eq!(MicroGesture::from_index(class.index()), Some(class));
            assert!(!class.name().is_empty());
        }
        assert_eq!(MicroGesture::from_index(32), None);
    }

    #[test]
    fn outcomes_parse() {
        assert_eq!(Outcome::parse(" win"), Some(Outcome::Win));
        assert_eq!(Outcome::parse("Lose"), Some(Outcome::Lose));
        assert_eq!(Outcome::parse("draw"), None);
    }
}
