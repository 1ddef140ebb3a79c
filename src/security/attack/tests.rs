//! Detector-level tests: categories, locations, exclusions, settings errors, robustness.
