//! sigild lib placeholder
