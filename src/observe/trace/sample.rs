//! The sampling decision: parent-based (an incoming sampled flag is honoured when
//! `respect_parent` is on), otherwise a ratio applied to the trace id, so every service using
//! the same ratio agrees on the same traces (OpenTelemetry's `TraceIdRatioBased`). Pure: no
//! clock, no I/O.

use super::context::Parent;

#[derive(Debug, Clone, Copy)]
pub struct Sampler {
    /// Trace ids whose low 63 bits fall below this are sampled.
    threshold: u64,
    always: bool,
    respect_parent: bool,
}

impl Sampler {
    pub fn new(ratio: f64, respect_parent: bool) -> Self {
        let ratio = ratio.clamp(0.0, 1.0);
        Self {
            threshold: (ratio * (1u64 << 63) as f64) as u64,
            always: ratio >= 1.0,
            respect_parent,
        }
    }

    /// Whether the trace `trace_id` (continuing `parent`, if any) is recorded.
    pub fn sampled(&self, trace_id: u128, parent: Option<&Parent>) -> bool {
        if let Some(parent) = parent
            && self.respect_parent
        {
            return parent.sampled;
        }
        if self.always {
            return true;
        }
        ((trace_id as u64) >> 1) < self.threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ratio_bounds_and_spread() {
        let never = Sampler::new(0.0, false);
        let always = Sampler::new(1.0, false);
        let tenth = Sampler::new(0.1, false);
        let mut hits = 0;
        for _ in 0..20_000 {
            let id = fastrand::u128(1..);
            assert!(!never.sampled(id, None));
            assert!(always.sampled(id, None));
            hits += usize::from(tenth.sampled(id, None));
        }
        assert!((1_600..2_400).contains(&hits), "{hits}");
    }

    #[test]
    fn parent_decides_when_respected() {
        let sampled = Parent {
            trace_id: 7,
            span_id: 1,
            sampled: true,
        };
        let unsampled = Parent {
            sampled: false,
            ..sampled
        };
        let never = Sampler::new(0.0, true);
        assert!(never.sampled(7, Some(&sampled)));
        let always = Sampler::new(1.0, true);
        assert!(!always.sampled(7, Some(&unsampled)));
        // Ignoring the parent, the ratio decides.
        assert!(!Sampler::new(0.0, false).sampled(7, Some(&sampled)));
        assert!(Sampler::new(1.0, false).sampled(7, Some(&unsampled)));
    }
}
