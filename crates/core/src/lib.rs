//! amiscan's shared core. Each Lambda crate parses its event, calls one
//! `ops::<its name>::run` and maps the error. Decisions are pure functions
//! in `ops`, `model` and `report`; every AWS call lives in `aws`.

pub mod aws;
pub mod error;
pub mod lambda;
pub mod model;
pub mod naming;
pub mod notify;
pub mod ops;
pub mod report;
pub mod settings;
pub mod tags;

pub use error::{Error, Result};
