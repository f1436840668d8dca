//! The network-namespace test bed and haldir's demo (moved here from the binary crate).
