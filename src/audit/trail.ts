/**
 * The audit log as a store offers it (store.audit): one chain of lines across every process
 * and machine that shares the store. The SQLite store keeps it in a file beside sy.db
 * (file-log.ts); a shared store keeps it in a table. The chain itself is chain.ts.
 */
import type { AuditEntry, AuditEvent, AuditFilter, AuditPosition, VerifyResult } from './chain.js';

export interface AuditVerifyResult extends VerifyResult {
  /** Where the log was read: the file, or the table. */
  location: string;
}

export interface AuditTrail {
  /**
   * Refuses (a SyError with exit 4, codes audit_log_*) a log that the next append would
   * refuse: a command must not change anything it could not then record. Changes nothing.
   */
  check(): Promise<void>;
  /**
   * Appends the events as consecutive lines of the one chain, serialised across processes
   * and machines. Time and actor (given when the store was opened) are filled in. A
   * tampered log throws (exit 4); an I/O failure of a file log only warns through the
   * `warn` callback given at open: a full disk must not undo the operation it records.
   */
  append(events: AuditEvent[]): Promise<void>;
  /** The entries, oldest first, filtered (`limit`: the last N). */
  read(filter: AuditFilter): Promise<AuditEntry[]>;
  /** Recomputes the chain and compares it with the recorded head, and says where it looked. */
  verify(): Promise<AuditVerifyResult>;
  /** Where the log ends (lines, hash; bytes for a file log). A tampered log throws (exit 4). */
  head(): Promise<AuditPosition>;
}
