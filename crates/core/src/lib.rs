//! amiscan's shared core: the domain types and pure decisions of a scan, and
//! the AWS calls each Lambda makes, as functions over SDK clients. The Lambda
//! crates only parse their event, call one function here and map its error.

pub mod aws;
pub mod cleanup;
pub mod deadline;
pub mod error;
pub mod export;
pub mod find;
pub mod iam;
pub mod lambda;
pub mod launch;
pub mod model;
pub mod naming;
pub mod notify;
pub mod report;
pub mod rule;
pub mod settings;
pub mod tagging;

pub use error::{Error, Result};
