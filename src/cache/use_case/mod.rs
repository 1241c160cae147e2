//! Use cases: their settings, asked of a provider on every call
//! ([`config`]), and the handle a program calls ([`handle`]).

mod config;
mod handle;

pub use config::{
    ConfigProvider, DisabledReason, LayerConfig, UseCaseConfig, UseCaseInfo, DEFAULT_REMOTE_TTL,
};
pub use handle::UseCase;
