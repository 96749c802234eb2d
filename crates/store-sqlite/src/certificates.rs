//! The certificate table's SQL.

use chrono::{DateTime, Utc};
use glassbox_store::CertificateRecord;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, params};

use super::{from_micros, micros};

const COLUMNS: &str = "serial, device, fingerprint, not_before, not_after, issued_at, issued_by, pem, renews, \
    renewed_by, grace_until, first_used_at, revoked_at, revoked_reason, expiry_warned_days";

fn row(r: &Row<'_>) -> rusqlite::Result<CertificateRecord> {
    let at = |i: usize| -> rusqlite::Result<Option<DateTime<Utc>>> { Ok(r.get::<_, Option<i64>>(i)?.map(from_micros)) };
    Ok(CertificateRecord {
        serial: r.get(0)?,
        device: r.get(1)?,
        fingerprint: r.get(2)?,
        not_before: from_micros(r.get(3)?),
        not_after: from_micros(r.get(4)?),
        issued_at: from_micros(r.get(5)?),
        issued_by: r.get(6)?,
        pem: r.get(7)?,
        renews: r.get(8)?,
        renewed_by: r.get(9)?,
        grace_until: at(10)?,
        first_used_at: at(11)?,
        revoked_at: at(12)?,
        revoked_reason: r.get(13)?,
        expiry_warned_days: r.get::<_, Option<i64>>(14)?.map(|d| d as u32),
    })
}

/// Inserts `c`; false if its serial is taken.
pub(super) fn add(tx: &Transaction<'_>, c: &CertificateRecord) -> rusqlite::Result<bool> {
    let micros_of = |t: &Option<DateTime<Utc>>| t.as_ref().map(micros);
    let inserted = tx.execute(
        &format!(
            "INSERT OR IGNORE INTO certificates ({COLUMNS})
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)"
        ),
        params![
            c.serial,
            c.device,
            c.fingerprint,
            micros(&c.not_before),
            micros(&c.not_after),
            micros(&c.issued_at),
            c.issued_by,
            c.pem,
            c.renews,
            c.renewed_by,
            micros_of(&c.grace_until),
            micros_of(&c.first_used_at),
            micros_of(&c.revoked_at),
            c.revoked_reason,
            c.expiry_warned_days.map(i64::from),
        ],
    )?;
    Ok(inserted == 1)
}

pub(super) fn get(conn: &Connection, serial: &str) -> rusqlite::Result<Option<CertificateRecord>> {
    conn.prepare_cached(&format!("SELECT {COLUMNS} FROM certificates WHERE serial = ?1"))?
        .query_row([serial], row)
        .optional()
}

pub(super) fn of_device(conn: &Connection, device: &str) -> rusqlite::Result<Vec<CertificateRecord>> {
    let sql = format!("SELECT {COLUMNS} FROM certificates WHERE device = ?1 ORDER BY issued_at DESC, serial");
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map([device], row)?;
    rows.collect()
}

pub(super) fn revoke(
    tx: &Transaction<'_>,
    device: &str,
    serial: Option<&str>,
    at: DateTime<Utc>,
    reason: &str,
) -> rusqlite::Result<Vec<CertificateRecord>> {
    let sql = format!(
        "UPDATE certificates SET revoked_at = ?3, revoked_reason = ?4
         WHERE device = ?1 AND (?2 IS NULL OR serial = ?2) AND revoked_at IS NULL RETURNING {COLUMNS}"
    );
    let mut stmt = tx.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![device, serial, micros(&at), reason], row)?;
    rows.collect()
}

pub(super) fn supersede(
    tx: &Transaction<'_>,
    serial: &str,
    renewed_by: &str,
    grace_until: DateTime<Utc>,
) -> rusqlite::Result<Option<CertificateRecord>> {
    tx.execute(
        "UPDATE certificates SET renewed_by = ?2, grace_until = ?3 WHERE serial = ?1",
        params![serial, renewed_by, micros(&grace_until)],
    )?;
    get(tx, serial)
}

pub(super) fn used(tx: &Transaction<'_>, serial: &str, at: DateTime<Utc>) -> rusqlite::Result<bool> {
    let changed = tx.execute(
        "UPDATE certificates SET first_used_at = ?2 WHERE serial = ?1 AND first_used_at IS NULL",
        params![serial, micros(&at)],
    )?;
    Ok(changed == 1)
}

pub(super) fn expiring(
    conn: &Connection,
    before: DateTime<Utc>,
    limit: usize,
) -> rusqlite::Result<Vec<CertificateRecord>> {
    let sql = format!(
        "SELECT {COLUMNS} FROM certificates
         WHERE revoked_at IS NULL AND renewed_by IS NULL AND not_after < ?1 ORDER BY not_after LIMIT ?2"
    );
    let mut stmt = conn.prepare_cached(&sql)?;
    let rows = stmt.query_map(params![micros(&before), limit as i64], row)?;
    rows.collect()
}

pub(super) fn warned(tx: &Transaction<'_>, serial: &str, days: u32) -> rusqlite::Result<()> {
    tx.execute("UPDATE certificates SET expiry_warned_days = ?2 WHERE serial = ?1", params![serial, i64::from(days)])?;
    Ok(())
}
