//! Deterministic synthetic zones for benchmarks: RFC 1035 master-file text of any size, with the
//! record mix of a typical hosting zone and only RFC 5737 / RFC 3849 documentation addresses.

use std::fmt::Write as _;

/// Master-file text for zone `origin` with exactly `records` records (at least 2: the SOA and
/// one NS), the same for the same `(origin, records, seed)`. After the SOA, NS and the name
/// server's address come hosts of 1–4 records (A, then AAAA, MX, TXT) and, one host in ten,
/// a CNAME to an earlier host. Owner names are relative (`h1a2b`); no record repeats.
pub fn synthetic_zone(origin: &str, records: usize, seed: u64) -> String {
    let origin = origin.trim().trim_end_matches('.');
    let records = records.max(2);
    let mut out = String::with_capacity(records * 40 + 256);
    let mut rng = SplitMix64(seed);
    // Writing to a String cannot fail, so the fmt results below are ignored.
    let _ = write!(
        out,
        "; synthetic zone: {records} records, seed {seed}\n\
         $ORIGIN {origin}.\n\
         $TTL 3600\n\
         @\tIN\tSOA\tns1 hostmaster ( {serial} 7200 900 1209600 300 )\n\
         \tIN\tNS\tns1\n",
        serial = 1 + seed % 1_000_000,
    );
    let mut remaining = records - 2;
    if remaining > 0 {
        out.push_str("ns1\tIN\tA\t192.0.2.53\n");
        remaining -= 1;
    }
    let mut host: u64 = 0;
    while remaining > 0 {
        let r = rng.next();
        let ttl = [300, 600, 3600, 86_400][(r >> 60) as usize & 3];
        if r.is_multiple_of(10) && host > 0 {
            let target = (r >> 32) % host;
            let _ = writeln!(out, "h{host:x}\t{ttl}\tIN\tCNAME\th{target:x}");
            remaining -= 1;
        } else {
            let count = (1 + ((r >> 8) % 4) as usize).min(remaining);
            let _ = write!(out, "h{host:x}");
            for kind in 0..count {
                out.push('\t');
                let _ = match kind {
                    0 => {
                        let net = ["192.0.2", "198.51.100", "203.0.113"][((r >> 12) % 3) as usize];
                        writeln!(out, "{ttl}\tIN\tA\t{net}.{}", 1 + (r >> 16) % 254)
                    }
                    1 => writeln!(
                        out,
                        "{ttl}\tIN\tAAAA\t2001:db8:{:x}:{:x}::1",
                        (host >> 16) & 0xffff,
                        host & 0xffff
                    ),
                    2 => writeln!(out, "{ttl}\tIN\tMX\t10 mx{}", (r >> 24) % 8),
                    _ => writeln!(out, "{ttl}\tIN\tTXT\t\"id={r:016x}\" \"v=synthetic\""),
                };
            }
            remaining -= count;
        }
        host += 1;
    }
    out
}

/// SplitMix64 (Steele, Lea, Flood 2014): tiny, fast and fixed, so output never changes with a
/// dependency upgrade.
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }
}
