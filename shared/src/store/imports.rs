//! Imports and their rejected rows. (Filled in by the producer import work.)
