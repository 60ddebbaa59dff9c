//! One file per group of commands.

mod auth;
mod gemini;

pub(crate) use auth::{
    IdentityArgs, LoginArgs, login, logout, print_access_token, print_identity_token,
};
pub(crate) use gemini::{GenerateArgs, UploadArgs, generate, models, upload};
