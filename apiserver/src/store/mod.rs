//! The event-sourced store. (Being written: see issue 2.)
