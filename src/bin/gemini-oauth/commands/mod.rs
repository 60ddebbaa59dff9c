//! One file per group of commands.

mod auth;
mod gemini;

pub(crate) use auth::{LoginArgs, login, logout, print_access_token};
pub(crate) use gemini::{GenerateArgs, UploadArgs, generate, models, upload};
