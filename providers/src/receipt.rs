//! What a provider's status callback says about a message it took, in one
//! shape for every provider. Each provider module reads its own callbacks into
//! it (`twilio::receipt`, `vonage::receipt`); verifyd applies it the same way
//! whoever sent it.

/// How far a message got, as a receipt reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReceiptStatus {
    Queued,
    Sent,
    Delivered,
    /// The carrier could not deliver it (unknown or unreachable number, filtered).
    Undelivered,
    /// The provider gave up on it.
    Failed,
}

impl ReceiptStatus {
    pub const ALL: [ReceiptStatus; 5] = [
        ReceiptStatus::Queued,
        ReceiptStatus::Sent,
        ReceiptStatus::Delivered,
        ReceiptStatus::Undelivered,
        ReceiptStatus::Failed,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            ReceiptStatus::Queued => "queued",
            ReceiptStatus::Sent => "sent",
            ReceiptStatus::Delivered => "delivered",
            ReceiptStatus::Undelivered => "undelivered",
            ReceiptStatus::Failed => "failed",
        }
    }

    pub fn parse(stored: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|s| s.as_str() == stored)
    }

    pub fn is_failure(self) -> bool {
        matches!(self, ReceiptStatus::Undelivered | ReceiptStatus::Failed)
    }
}

/// A receipt, read from a callback whose signature was checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Receipt {
    pub provider: &'static str,
    /// The provider's id of the message, as it answered when it took it.
    pub message_id: String,
    pub status: ReceiptStatus,
    /// The provider's or carrier's error code, as the provider wrote it.
    pub error_code: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses_read_back_and_two_are_failures() {
        for s in ReceiptStatus::ALL {
            assert_eq!(ReceiptStatus::parse(s.as_str()), Some(s));
        }
        assert_eq!(ReceiptStatus::parse("read"), None);
        let failures: Vec<_> = ReceiptStatus::ALL.into_iter().filter(|s| s.is_failure()).collect();
        assert_eq!(failures, [ReceiptStatus::Undelivered, ReceiptStatus::Failed]);
    }
}
