//! Empty: this package only exists to build its dependencies (the offered crates).
