//! The lease against a real 3-node cluster: compare-and-set conflicts, expiry on the servers,
//! release, and nodes that disagree on the lease.

use std::time::{Duration, Instant};

use cluster::lease::{Lease, RenewError};
use cluster::ClusterError;

use crate::{jetstream, runtime, start_cluster};

const LEASE: Duration = Duration::from_secs(1);
/// How far the servers' wall clock and this test's monotonic clock may disagree over a lease.
const CLOCK_DRIFT: Duration = Duration::from_millis(10);

#[test]
fn a_held_lease_cannot_be_taken_and_a_stale_revision_cannot_renew_it() {
    let test = start_cluster(3);
    runtime().block_on(async {
        let js = jetstream(&test.cluster).await;
        let a = Lease::open(&js, "lease_cas", Duration::from_secs(10), 3, "node-a").await.expect("open a");
        let b = Lease::open(&js, "lease_cas", Duration::from_secs(10), 3, "node-b").await.expect("open b");
        assert!(a.holder().await.expect("read").is_none(), "a new bucket has no holder");
        let first = a.try_acquire(7).await.expect("ask").expect("a takes the free lease");
        assert!(b.try_acquire(0).await.expect("ask").is_none(), "b cannot take a held lease");
        let (record, revision) = a.holder().await.expect("read").expect("held");
        assert_eq!((record.node.as_str(), record.position, revision), ("node-a", 7, first.revision));
        // A create whose answer was lost reads as "held" when retried: by this node, so the
        // lease is adopted, not waited out.
        let adopted = a.try_acquire(8).await.expect("ask").expect("a's own lease is adopted");
        assert_eq!(adopted.revision, first.revision);
        let second = a.renew(&first, 9).await.expect("a renews with its revision");
        assert!(second.revision > first.revision);
        // The revision a holder wrote before is stale once it renewed: compare-and-set refuses
        // the write. The value is a's own (as after a renewal whose answer was lost), so a
        // adopts the current revision, without writing, and keeps the lease's start where the
        // last confirmed renewal put it.
        let stale = a.renew(&first, 10).await.expect("a adopts its own newer write");
        assert_eq!((stale.revision, stale.sent_at), (second.revision, first.sent_at));
        assert_eq!(a.holder().await.expect("read").expect("held").0.position, 9, "nothing written");
        // b cannot renew a lease it never had, even with the current revision under its name.
        let third = b.renew(&second, 0).await.expect("the CAS is on the revision only");
        assert!(matches!(a.renew(&second, 11).await, Err(RenewError::Lost(_))), "a renewed after b wrote");
        assert_eq!(a.holder().await.expect("read").expect("held").0.node, "node-b");
        b.release(&third).await.expect("release");
        assert!(a.holder().await.expect("read").is_none(), "released");
        let again = a.try_acquire(12).await.expect("ask").expect("a takes a released lease at once");
        // Releasing with a revision that is not the current one leaves the holder alone.
        b.release(&third).await.expect_err("a stale release is refused");
        assert_eq!(a.holder().await.expect("read").expect("held").1, again.revision);
    });
}

#[test]
fn an_unrenewed_lease_lapses_on_the_servers_and_its_holder_cannot_renew_it_after() {
    let test = start_cluster(3);
    runtime().block_on(async {
        let js = jetstream(&test.cluster).await;
        let a = Lease::open(&js, "lease_expiry", LEASE, 3, "node-a").await.expect("open a");
        let b = Lease::open(&js, "lease_expiry", LEASE, 3, "node-b").await.expect("open b");
        let grant = a.try_acquire(0).await.expect("ask").expect("a takes the lease");
        // Renewed, it stays a's for longer than one lease.
        let mut grant_now = grant;
        let renewing_until = Instant::now() + 2 * LEASE;
        while Instant::now() < renewing_until {
            grant_now = a.renew(&grant_now, 0).await.expect("renew");
            assert!(b.try_acquire(0).await.expect("ask").is_none(), "taken while renewed");
            tokio::time::sleep(LEASE / 3).await;
        }
        // Not renewed, it lapses: b gets it, never before a stopped leading (5/6 of the lease
        // after a sent its last renewal), and within a few seconds.
        let stopped_renewing = grant_now.sent_at;
        let taken = loop {
            if let Some(taken) = b.try_acquire(1).await.expect("ask") {
                break taken;
            }
            assert!(stopped_renewing.elapsed() < LEASE + Duration::from_secs(5), "the lease never lapsed");
            tokio::time::sleep(Duration::from_millis(20)).await;
        };
        let lapsed_after = taken.sent_at - stopped_renewing;
        println!("a lease of {LEASE:?} lapsed {lapsed_after:?} after its last renewal was sent");
        assert!(taken.sent_at >= a.self_fence_at(grant_now.sent_at), "taken before the holder self-fenced");
        // The servers date a value by their wall clock, this test by its monotonic one; the two
        // may drift apart by a little (a clock being slewed), never by the 1/6 of a lease the
        // holder's self-fence keeps in hand (checked just above).
        assert!(
            lapsed_after + CLOCK_DRIFT >= LEASE,
            "the servers removed the lease after {lapsed_after:?}, before {LEASE:?} (less {CLOCK_DRIFT:?} of drift)"
        );
        assert!(matches!(a.renew(&grant_now, 0).await, Err(RenewError::Lost(_))), "renewed a lapsed lease");
        assert_eq!(a.holder().await.expect("read").expect("held").0.node, "node-b");
    });
}

#[test]
fn nodes_that_disagree_on_the_lease_are_refused() {
    let test = start_cluster(3);
    runtime().block_on(async {
        let js = jetstream(&test.cluster).await;
        Lease::open(&js, "lease_config", LEASE, 3, "node-a").await.expect("open a");
        let other = Lease::open(&js, "lease_config", 2 * LEASE, 3, "node-b").await;
        assert!(
            matches!(&other, Err(ClusterError::InvalidOptions(reason)) if reason.contains("same lease")),
            "{other:?}"
        );
        let short = Lease::open(&js, "lease_short", Duration::from_millis(10), 3, "node-a").await;
        assert!(matches!(short, Err(ClusterError::InvalidOptions(_))), "{short:?}");
    });
}
