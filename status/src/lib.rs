//! The one typed status model of a running haldir: every output (control socket, `haldir
//! status`, the status file, `/metrics`, the USR1/USR2 dumps) renders a value of these types.
