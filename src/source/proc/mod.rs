//! /proc/net/tcp and /proc/net/tcp6: the text parser ([`parse`]) and the scanner that feeds it
//! through one reused buffer under a deadline ([`scan`]).

pub mod parse;
pub mod scan;
