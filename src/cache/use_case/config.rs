//! Per-use-case settings, asked of a provider on every call.

use std::time::Duration;

/// How long an entry lives in the remote layer unless the provider says
/// otherwise: five minutes.
pub const DEFAULT_REMOTE_TTL: Duration = Duration::from_secs(300);

/// One layer's settings for a use case.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::cache::LayerConfig;
///
/// let half = LayerConfig::new(Duration::from_secs(60)).ramp_percent(50);
/// assert_eq!(half.ramp_percent, 50);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct LayerConfig {
    /// How long an entry lives in this layer.
    pub ttl: Duration,
    /// Share of calls, 0 to 100, that use this layer; above 100 counts as
    /// 100. Each call draws one number for all its layers, so a call in a
    /// 10 % local ramp is also in a 30 % remote ramp.
    pub ramp_percent: u8,
}

impl LayerConfig {
    /// The layer for every call (100 %), entries living `ttl`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::LayerConfig;
    ///
    /// assert_eq!(LayerConfig::new(Duration::from_secs(5)).ramp_percent, 100);
    /// ```
    pub fn new(ttl: Duration) -> Self {
        LayerConfig {
            ttl,
            ramp_percent: 100,
        }
    }

    /// The same layer for `percent` % of calls.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::LayerConfig;
    ///
    /// let off = LayerConfig::new(Duration::from_secs(5)).ramp_percent(0);
    /// assert_eq!(off.ramp_percent, 0);
    /// ```
    pub fn ramp_percent(mut self, percent: u8) -> Self {
        self.ramp_percent = percent.min(100);
        self
    }
}

/// A use case's settings: a TTL and a ramp per layer; a layer left `None`
/// is not used.
///
/// ```
/// use std::time::Duration;
/// use tiny_cache_client::cache::{LayerConfig, UseCaseConfig};
///
/// let config = UseCaseConfig::remote(Duration::from_secs(300))
///     .with_local(LayerConfig::new(Duration::from_secs(2)).ramp_percent(10));
/// assert_eq!(config.local.unwrap().ramp_percent, 10);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct UseCaseConfig {
    /// The in-process layer: bounds how long this process can serve an
    /// entry another process invalidated (see
    /// [`EntityCache`](crate::cache::EntityCache)).
    pub local: Option<LayerConfig>,
    /// The remote layer (the tiny-cache server).
    pub remote: Option<LayerConfig>,
}

impl Default for UseCaseConfig {
    /// The remote layer for every call with [`DEFAULT_REMOTE_TTL`]; no
    /// local layer.
    fn default() -> Self {
        UseCaseConfig::remote(DEFAULT_REMOTE_TTL)
    }
}

impl UseCaseConfig {
    /// The remote layer alone, for every call, entries living `ttl`.
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::UseCaseConfig;
    ///
    /// let config = UseCaseConfig::remote(Duration::from_secs(60));
    /// assert!(config.local.is_none());
    /// ```
    pub fn remote(ttl: Duration) -> Self {
        UseCaseConfig {
            local: None,
            remote: Some(LayerConfig::new(ttl)),
        }
    }

    /// The same with the remote layer set to `layer` (`None`: not used).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{LayerConfig, UseCaseConfig};
    ///
    /// let ramped = UseCaseConfig::default()
    ///     .with_remote(LayerConfig::new(Duration::from_secs(60)).ramp_percent(30));
    /// assert_eq!(ramped.remote.unwrap().ramp_percent, 30);
    /// ```
    pub fn with_remote(mut self, layer: impl Into<Option<LayerConfig>>) -> Self {
        self.remote = layer.into();
        self
    }

    /// The same with the local layer set to `layer` (`None`: not used).
    ///
    /// ```
    /// use std::time::Duration;
    /// use tiny_cache_client::cache::{LayerConfig, UseCaseConfig};
    ///
    /// let config = UseCaseConfig::default().with_local(LayerConfig::new(Duration::from_secs(1)));
    /// assert!(config.local.is_some());
    /// ```
    pub fn with_local(mut self, layer: impl Into<Option<LayerConfig>>) -> Self {
        self.local = layer.into();
        self
    }
}

/// What a config provider is asked about.
///
/// ```
/// use tiny_cache_client::cache::UseCaseInfo;
///
/// let info = UseCaseInfo { name: "GetUser", key_type: "user_id" };
/// assert_eq!(info.name, "GetUser");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UseCaseInfo<'a> {
    /// The use case's name.
    pub name: &'a str,
    /// Its key type.
    pub key_type: &'a str,
}

/// Where a use case's settings come from, asked on every call so that they
/// can change while the program runs (a feature-flag service, a file
/// watched for changes, an admin endpoint). `None` disables the use case:
/// the call goes straight to the function and counts as disabled, reason
/// `config`.
///
/// Any `Fn(&UseCaseInfo) -> Option<UseCaseConfig> + Send + Sync` is one.
/// It runs on every call: keep it to a lookup (an `RwLock` read or an
/// atomic swap), not I/O.
///
/// ```
/// use std::sync::{Arc, RwLock};
/// use std::time::Duration;
/// use tiny_cache_client::cache::{ConfigProvider, UseCaseConfig, UseCaseInfo};
///
/// let ttl_secs = Arc::new(RwLock::new(60));
/// let knob = Arc::clone(&ttl_secs);
/// let provider = move |info: &UseCaseInfo<'_>| {
///     (info.name != "Experimental")
///         .then(|| UseCaseConfig::remote(Duration::from_secs(*knob.read().unwrap())))
/// };
/// let info = UseCaseInfo { name: "GetUser", key_type: "user_id" };
/// *ttl_secs.write().unwrap() = 120; // changed at run time
/// assert_eq!(provider.config(&info).unwrap().remote.unwrap().ttl, Duration::from_secs(120));
/// ```
pub trait ConfigProvider: Send + Sync {
    /// The settings of `use_case` for this call; `None` disables it.
    fn config(&self, use_case: &UseCaseInfo<'_>) -> Option<UseCaseConfig>;
}

impl<F> ConfigProvider for F
where
    F: Fn(&UseCaseInfo<'_>) -> Option<UseCaseConfig> + Send + Sync,
{
    fn config(&self, use_case: &UseCaseInfo<'_>) -> Option<UseCaseConfig> {
        self(use_case)
    }
}

/// Why a call did not use the cache.
///
/// ```
/// use tiny_cache_client::cache::DisabledReason;
///
/// assert_eq!(DisabledReason::Scope.as_str(), "scope");
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DisabledReason {
    /// The calling thread is outside an enable scope.
    Scope,
    /// The config provider returned `None`, or no layer.
    Config,
    /// The call's draw fell outside every layer's ramp.
    Ramp,
}

impl DisabledReason {
    /// Every reason, in the order of their counters.
    #[cfg(feature = "metrics")]
    pub(crate) const ALL: [DisabledReason; 3] = [
        DisabledReason::Scope,
        DisabledReason::Config,
        DisabledReason::Ramp,
    ];

    /// The reason as its metric label value.
    ///
    /// ```
    /// use tiny_cache_client::cache::DisabledReason;
    ///
    /// assert_eq!(DisabledReason::Ramp.as_str(), "ramp");
    /// ```
    pub fn as_str(self) -> &'static str {
        match self {
            DisabledReason::Scope => "scope",
            DisabledReason::Config => "config",
            DisabledReason::Ramp => "ramp",
        }
    }
}
