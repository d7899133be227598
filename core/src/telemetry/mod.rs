//! What the flows count, for operators: the catalogue of metrics, every
//! series registered at start with `# HELP` (`catalog`), and this process's
//! delivery and conversion counts that the reporter writes for the overview
//! (`stats`). It knows no flow: verification, delivery and ops count into it.

pub mod catalog;
pub mod stats;

/// Report now, not at the next interval: something operators watch changed
/// (a circuit opened or closed). The process reporter (`ops::reporter`)
/// handles it; a flow holds only a `Recipient<ReportNow>`.
#[derive(actix::Message)]
#[rtype(result = "()")]
pub struct ReportNow;
