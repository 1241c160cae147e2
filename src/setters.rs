//! The builders' plain setters: a setter that stores its argument as
//! given is one line of a table (docs, name, argument, field) instead of
//! five lines of code, in every builder of the crate.

/// Setters that store their argument as given (`build` checks it): each
/// method, with its docs, and the field it sets.
macro_rules! setters {
    ($($(#[$doc:meta])* $name:ident($arg:ident: $ty:ty) => $($field:ident).+;)+) => {
        $(
            $(#[$doc])*
            pub fn $name(mut self, $arg: $ty) -> Self {
                self.$($field).+ = $arg;
                self
            }
        )+
    };
}
pub(crate) use setters;
