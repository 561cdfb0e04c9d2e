//! Step Functions: starting an execution by name, idempotently.

pub use aws_sdk_sfn::{config, error, operation, types, Client};

use crate::error::{Error, Result};

pub enum Started {
    /// A new execution, by its ARN.
    New(String),
    /// An execution of this name already exists (StartExecution is
    /// idempotent by name for 90 days).
    AlreadyExists,
}

pub async fn start_execution(
    client: &Client,
    machine_arn: &str,
    name: &str,
    input: String,
) -> Result<Started> {
    match client
        .start_execution()
        .state_machine_arn(machine_arn)
        .name(name)
        .input(input)
        .send()
        .await
    {
        Ok(out) => Ok(Started::New(out.execution_arn)),
        Err(e)
            if e.as_service_error()
                .is_some_and(|e| e.is_execution_already_exists()) =>
        {
            Ok(Started::AlreadyExists)
        }
        Err(e) => Err(Error::from_sdk("StartExecution", e)),
    }
}

/// The names of a state machine's running executions, every page.
/// ListExecutions is eventually consistent: an execution started a moment
/// ago may be missing.
pub async fn running_executions(client: &Client, machine_arn: &str) -> Result<Vec<String>> {
    let pages: Vec<_> = client
        .list_executions()
        .state_machine_arn(machine_arn)
        .status_filter(types::ExecutionStatus::Running)
        .max_results(1000)
        .into_paginator()
        .send()
        .try_collect()
        .await
        .map_err(|e| Error::from_sdk("ListExecutions", e))?;
    Ok(pages
        .iter()
        .flat_map(|page| page.executions())
        .map(|e| e.name().to_string())
        .collect())
}

/// Hands a waiting task its result. `false` when the task no longer waits
/// (it timed out, or another delivery already completed it).
pub async fn send_task_success(client: &Client, task_token: &str, output: String) -> Result<bool> {
    match client
        .send_task_success()
        .task_token(task_token)
        .output(output)
        .send()
        .await
    {
        Ok(_) => Ok(true),
        Err(e)
            if e.as_service_error().is_some_and(|e| {
                e.is_task_timed_out() || e.is_invalid_token() || e.is_task_does_not_exist()
            }) =>
        {
            Ok(false)
        }
        Err(e) => Err(Error::from_sdk("SendTaskSuccess", e)),
    }
}
