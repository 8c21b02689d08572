//! The payment simulator: approves an order with probability `rate`, deterministically for a
//! given seed and order identity, so a redelivered order gets the same answer (like a real
//! gateway called with an idempotency key).

use sha2::{Digest, Sha256};

use crate::order::OrderIdentity;

/// Success rate as parts per million, checked to be within 0..=1 at start.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PaymentSimulator {
    seed: u64,
    success_ppm: u32,
}

impl PaymentSimulator {
    /// `rate` is a probability in `0.0..=1.0` (a setting, not money).
    pub fn new(rate: f64, seed: u64) -> Result<Self, String> {
        if !(0.0..=1.0).contains(&rate) || rate.is_nan() {
            return Err(format!(
                "payment success rate {rate} must be within 0 and 1"
            ));
        }
        Ok(PaymentSimulator {
            seed,
            success_ppm: (rate * 1_000_000.0).round() as u32,
        })
    }

    /// True when the payment of this order is approved.
    pub fn approves(&self, identity: &OrderIdentity) -> bool {
        let mut hasher = Sha256::new();
        hasher.update(self.seed.to_le_bytes());
        hasher.update(identity.as_str().as_bytes());
        let digest = hasher.finalize();
        let draw = u64::from_le_bytes(digest[..8].try_into().expect("8 bytes")) % 1_000_000;
        draw < u64::from(self.success_ppm)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> OrderIdentity {
        OrderIdentity::derived("file", n, None)
    }

    #[test]
    fn same_seed_same_decisions_other_seed_other_decisions() {
        let a = PaymentSimulator::new(0.8, 42).unwrap();
        let b = PaymentSimulator::new(0.8, 42).unwrap();
        let c = PaymentSimulator::new(0.8, 43).unwrap();
        let decisions =
            |p: &PaymentSimulator| (0..1000).map(|n| p.approves(&id(n))).collect::<Vec<_>>();
        assert_eq!(decisions(&a), decisions(&b));
        assert_ne!(decisions(&a), decisions(&c));
    }

    #[test]
    fn rate_is_respected_over_many_orders() {
        let p = PaymentSimulator::new(0.8, 7).unwrap();
        let approved = (0..10_000).filter(|n| p.approves(&id(*n))).count();
        assert!(
            (7_800..=8_200).contains(&approved),
            "approved {approved} of 10000"
        );
    }

    #[test]
    fn extreme_rates() {
        let never = PaymentSimulator::new(0.0, 1).unwrap();
        let always = PaymentSimulator::new(1.0, 1).unwrap();
        assert!((0..1000).all(|n| !never.approves(&id(n))));
        assert!((0..1000).all(|n| always.approves(&id(n))));
        assert!(PaymentSimulator::new(1.5, 1).is_err());
        assert!(PaymentSimulator::new(f64::NAN, 1).is_err());
    }
}
