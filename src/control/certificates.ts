/**
 * The certificates API (seed 000 §5): certificates are parsed and checked on upload, the private
 * key is sealed before it is stored and never leaves again through the API.
 *
 * A certificate's contents change only through rotation: new material for the same names, checked
 * like an upload, replacing the old in one store write together with a rotation record. Listeners
 * serve certificates by id, so a rotation needs no listener change; the data plane recompiles its
 * TLS contexts from the store on the write's revision, before the API answers. New handshakes get
 * the new certificate; connections already open keep the one they negotiated.
 */
import {
  type Certificate,
  CERTIFICATE_DEFAULTS,
  type CertificateCreate,
  type CertificatePatch,
  type CertificateQuery,
  type CertificateRotate,
  type CertificateRotation,
} from '../model/certificate.ts';
import { DEFAULT_SCOPE_ID, isoSeconds } from '../model/common.ts';
import type { Listener } from '../model/listener.ts';
import type { ReadView } from '../store/store.ts';
import { type CertificateFacts, CertificateProblem, inspectCertificate } from '../tls/certificate.ts';
import type { SecretBox } from '../tls/secret-box.ts';
import { type ControlContext, expectedVersion, isoNow, paging, writeAndApply } from './context.ts';
import { FulcrumError, notFound } from './errors.ts';
import { allocateId } from './ids.ts';

const DAY_MS = 86_400_000;

/**
 * Whether a certificate naming `names` serves `name`: the same name, or, for an exact name, a
 * wildcard for its parent (`*.example.com` serves `api.example.com`, one label only, RFC 6125
 * §6.4.3). A wildcard name is served only by the same wildcard.
 */
export function servesName(names: readonly string[], name: string): boolean {
  const n = name.toLowerCase();
  if (names.includes(n)) return true;
  if (n.startsWith('*.')) return false;
  const dot = n.indexOf('.');
  return dot > 0 && names.includes(`*.${n.slice(dot + 1)}`);
}

/** The names of `current` that a certificate naming `next` would no longer serve. */
export function lostNames(current: readonly string[], next: readonly string[]): string[] {
  return current.filter((name) => !servesName(next, name));
}

/** The days-until-expiry the API shows: whole days left, negative once expired. */
export function daysUntilExpiry(validUntil: string, now: number): number {
  return Math.floor((Date.parse(validUntil) - now) / DAY_MS);
}

/** A rotation record as the API shows it (the store's own version is not part of it). */
function rotationView(r: CertificateRotation & { version?: number }): CertificateRotation {
  const { version: _version, ...shown } = r;
  return shown;
}

export class CertificateService {
  readonly #ctx: ControlContext;
  readonly #box: SecretBox;

  constructor(ctx: ControlContext, box: SecretBox) {
    this.#ctx = ctx;
    this.#box = box;
  }

  async #listeners(view: ReadView = this.#ctx.store): Promise<Listener[]> {
    return (await view.list<Listener>('listener')).items.map((r) => r.body);
  }

  /** Listeners that serve the certificate (HTTPS listeners name theirs in `tls.certificate_ids`). */
  static #servedBy(listeners: readonly Listener[], certId: string): Listener[] {
    return listeners.filter((l) => l.tls?.certificate_ids?.includes(certId));
  }

  #status(c: Certificate, now: number): { status: 'ACTIVE' | 'EXPIRING_SOON' | 'EXPIRED'; days: number } {
    const left = Date.parse(c.valid_until) - now;
    const days = daysUntilExpiry(c.valid_until, now);
    if (left <= 0) return { status: 'EXPIRED', days };
    const soon = Math.max(CERTIFICATE_DEFAULTS.expiring_soon_days, ...c.notify_before_expiry_days);
    return { status: days <= soon ? 'EXPIRING_SOON' : 'ACTIVE', days };
  }

  #view(c: Certificate, listeners: readonly Listener[]) {
    const { private_key_sealed: _sealed, ...shown } = c;
    const { status, days } = this.#status(c, this.#ctx.clock.now());
    const users = CertificateService.#servedBy(listeners, c.cert_id);
    // The pools behind the listeners that serve it: where its traffic goes.
    const pools = [...new Set(users.map((l) => l.default_pool_id).filter((p): p is string => p !== null && p !== undefined))];
    return {
      ...shown,
      rotated_at: c.rotated_at ?? null,
      previous_fingerprint_sha256: c.previous_fingerprint_sha256 ?? null,
      status,
      days_until_expiry: days,
      in_use_by_listeners: users.map((l) => l.listener_id),
      in_use_by_pools: pools,
    };
  }

  /**
   * Reads and checks new material; a refusal is 422 INVALID_CERTIFICATE with the reason. `fields`
   * renames the PEM fields in the reason to the ones this request used (rotate's `new_…`).
   */
  #inspect(certificatePem: string, privateKeyPem: string, chainPem: string | undefined, fields?: 'rotate'): CertificateFacts {
    try {
      return inspectCertificate(certificatePem, privateKeyPem, chainPem, this.#ctx.clock.now());
    } catch (err) {
      if (!(err instanceof CertificateProblem)) throw err;
      const reason = fields === 'rotate' ? err.message.replace(/\b(certificate_pem|private_key_pem|chain_pem)\b/g, 'new_$1') : err.message;
      throw new FulcrumError('INVALID_CERTIFICATE', `The certificate cannot be used: ${reason}`, { reason });
    }
  }

  /** The fields that come from the material itself: what a rotation replaces. */
  #material(facts: CertificateFacts, certificatePem: string, privateKeyPem: string, chainPem: string | undefined) {
    return {
      domains: facts.domains,
      type: facts.type,
      key_type: facts.key_type,
      issuer: facts.issuer,
      subject: facts.subject,
      valid_from: isoSeconds(facts.valid_from),
      valid_until: isoSeconds(facts.valid_until),
      fingerprint_sha256: facts.fingerprint_sha256,
      certificate_pem: certificatePem,
      chain_pem: chainPem ?? null,
      private_key_sealed: this.#box.seal(privateKeyPem),
    } satisfies Partial<Certificate>;
  }

  async create(input: CertificateCreate) {
    const facts = this.#inspect(input.certificate_pem, input.private_key_pem, input.chain_pem);
    const missing = (input.domains ?? []).filter((d) => !facts.domains.includes(d.toLowerCase()));
    if (missing.length > 0) {
      throw new FulcrumError('INVALID_CERTIFICATE', `The certificate does not cover ${missing.join(', ')}; it names ${facts.domains.join(', ')}`, {
        reason: 'domains not covered',
        missing,
        certificate_domains: facts.domains,
      });
    }
    const stamp = isoNow(this.#ctx.clock);
    const cert = await writeAndApply(this.#ctx, async (tx) => {
      const id = await allocateId('cert', input.name, async (c) => (await tx.get('certificate', c)) !== undefined, this.#ctx.random, ['cert', 'certificate']);
      const scope = { org_id: input.org_id ?? DEFAULT_SCOPE_ID, project_id: input.project_id ?? DEFAULT_SCOPE_ID };
      const body: Certificate = {
        cert_id: id,
        name: input.name,
        ...this.#material(facts, input.certificate_pem, input.private_key_pem, input.chain_pem),
        auto_renew: input.auto_renew ?? false,
        notify_before_expiry_days: input.notify_before_expiry_days ?? [...CERTIFICATE_DEFAULTS.notify_before_expiry_days],
        rotated_at: null,
        previous_fingerprint_sha256: null,
        ...scope,
        created_at: stamp,
        updated_at: stamp,
        version: 0,
      };
      return (await tx.put('certificate', id, null, scope, body, 'absent')).body;
    });
    return this.#view(cert, await this.#listeners());
  }

  async get(certId: string) {
    const found = await this.#ctx.store.get<Certificate>('certificate', certId);
    if (!found) throw notFound.certificate(certId);
    return this.#view(found.body, await this.#listeners());
  }

  async list(query: CertificateQuery) {
    const p = paging(query);
    const now = this.#ctx.clock.now();
    const all = (await this.#ctx.store.list<Certificate>('certificate')).items.map((r) => r.body);
    const summary = { total: all.length, active: 0, expiring_soon: 0, expired: 0 };
    for (const c of all) {
      const { status } = this.#status(c, now);
      if (status === 'ACTIVE') summary.active++;
      else if (status === 'EXPIRING_SOON') summary.expiring_soon++;
      else summary.expired++;
    }
    const within = query.expiring_within_days;
    const matching = within === undefined ? all : all.filter((c) => Date.parse(c.valid_until) - now <= within * DAY_MS);
    const listeners = await this.#listeners();
    const page = matching.slice(p.offset, p.offset + p.limit).map((c) => this.#view(c, listeners));
    return { certificates: page, pagination: p.block(matching.length), summary };
  }

  /** Name, auto_renew and notice days; `version` or If-Match guard against a lost update. */
  async patch(certId: string, input: CertificatePatch, ifMatch: string | undefined) {
    const { version, ...fields } = input;
    const expect = expectedVersion(ifMatch, version);
    const cert = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Certificate>('certificate', certId);
      if (!found) throw notFound.certificate(certId);
      const next = { ...found.body };
      if (fields.name !== undefined) next.name = fields.name;
      if (fields.auto_renew !== undefined) next.auto_renew = fields.auto_renew;
      if (fields.notify_before_expiry_days !== undefined) next.notify_before_expiry_days = fields.notify_before_expiry_days;
      next.updated_at = isoNow(this.#ctx.clock);
      return (await tx.put('certificate', certId, found.parentId, found.scope, next, expect)).body;
    });
    return this.#view(cert, await this.#listeners());
  }

  /**
   * Replaces the certificate's material under the same id. The new certificate must serve every
   * name the current one serves: a certificate for other names is a new certificate (upload it
   * and point the listener at it), since listeners that chose this one by name would otherwise
   * stop serving a name without anyone touching them.
   */
  async rotate(certId: string, input: CertificateRotate) {
    const strategy = input.rollout_strategy ?? CERTIFICATE_DEFAULTS.rollout_strategy;
    const started = isoNow(this.#ctx.clock);
    // An unknown id is answered before the material is judged; the parsing and sealing happen
    // outside the write transaction, which only compares names and writes.
    if (!(await this.#ctx.store.get('certificate', certId))) throw notFound.certificate(certId);
    const facts = this.#inspect(input.new_certificate_pem, input.new_private_key_pem, input.new_chain_pem, 'rotate');
    const material = this.#material(facts, input.new_certificate_pem, input.new_private_key_pem, input.new_chain_pem);
    const rotation = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Certificate>('certificate', certId);
      if (!found) throw notFound.certificate(certId);
      const old = found.body;
      const lost = lostNames(old.domains, facts.domains);
      if (lost.length > 0) {
        throw new FulcrumError(
          'INVALID_CERTIFICATE',
          `The new certificate does not cover ${lost.join(', ')}, which certificate '${certId}' serves; it names ${facts.domains.join(', ')}. ` +
            'A certificate for other names is a new certificate: upload it and point the listener at it.',
          { reason: `names not covered: ${lost.join(', ')}`, lost_domains: lost, certificate_domains: facts.domains },
        );
      }
      // The same leaf with a corrected chain is a legitimate rotation, so an unchanged fingerprint is accepted.
      const stamp = isoNow(this.#ctx.clock);
      const next: Certificate = {
        ...old,
        ...material,
        rotated_at: stamp,
        previous_fingerprint_sha256: old.fingerprint_sha256,
        updated_at: stamp,
      };
      await tx.put('certificate', certId, found.parentId, found.scope, next, found.version);
      const rotationId = await allocateId('rotate', '', async (id) => (await tx.get('certificate_rotation', id)) !== undefined, this.#ctx.random);
      const record: CertificateRotation = {
        rotation_id: rotationId,
        cert_id: certId,
        old_cert_id: certId,
        // One instance: complete once this write reaches the data plane, which writeAndApply waits for.
        status: 'COMPLETED',
        rollout_strategy: strategy,
        rollout_percent_per_minute: strategy === 'ROLLING' ? (input.rollout_percent_per_minute ?? CERTIFICATE_DEFAULTS.rollout_percent_per_minute) : null,
        rollout_progress_percent: 100,
        old_cert_fingerprint: old.fingerprint_sha256,
        new_cert_fingerprint: next.fingerprint_sha256,
        old_valid_until: old.valid_until,
        new_valid_until: next.valid_until,
        started_at: started,
        estimated_completion: stamp,
        completed_at: stamp,
        org_id: found.scope.org_id,
        project_id: found.scope.project_id,
      };
      return (await tx.put('certificate_rotation', rotationId, certId, found.scope, record, 'absent')).body;
    });
    const message =
      strategy === 'ROLLING'
        ? 'Rotation completed: this instance serves the new certificate to new connections (ROLLING pacing applies across instances sharing a configuration); open connections keep the certificate they negotiated.'
        : 'Rotation completed: new connections get the new certificate; open connections keep the certificate they negotiated.';
    return { ...rotationView(rotation), message };
  }

  async getRotation(certId: string, rotationId: string): Promise<CertificateRotation> {
    if (!(await this.#ctx.store.get('certificate', certId))) throw notFound.certificate(certId);
    const found = await this.#ctx.store.get<CertificateRotation>('certificate_rotation', rotationId);
    if (!found || found.parentId !== certId) {
      throw new FulcrumError('ROTATION_NOT_FOUND', `Rotation '${rotationId}' not found for certificate '${certId}'`, { cert_id: certId, rotation_id: rotationId });
    }
    return rotationView(found.body);
  }

  /** The certificate's rotations, newest first. */
  async listRotations(certId: string, query: { page?: number; per_page?: number }) {
    if (!(await this.#ctx.store.get('certificate', certId))) throw notFound.certificate(certId);
    const p = paging(query);
    const { total } = await this.#ctx.store.list('certificate_rotation', { parentId: certId, limit: 0 });
    // The store pages oldest first (insertion order); take the mirrored window and reverse it.
    const end = Math.max(0, total - p.offset);
    const start = Math.max(0, end - p.limit);
    const window = end > start ? (await this.#ctx.store.list<CertificateRotation>('certificate_rotation', { parentId: certId, offset: start, limit: end - start })).items : [];
    return { rotations: window.reverse().map((r) => rotationView(r.body)), pagination: p.block(total) };
  }

  async delete(certId: string) {
    const removed = await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Certificate>('certificate', certId);
      if (!found) throw notFound.certificate(certId);
      const users = CertificateService.#servedBy(await this.#listeners(tx), certId).map((l) => l.listener_id);
      if (users.length > 0) {
        throw new FulcrumError('CERTIFICATE_IN_USE', `Certificate '${certId}' is served by listener(s) ${users.join(', ')}; remove it from them first`, {
          cert_id: certId,
          listener_ids: users,
        });
      }
      // Its rotation records go in the same transaction: none outlives the certificate.
      const rotations = (await tx.list('certificate_rotation', { parentId: certId })).items;
      for (const r of rotations) await tx.delete('certificate_rotation', r.id);
      await tx.delete('certificate', certId, found.version);
      return rotations.length;
    });
    return { cert_id: certId, status: 'DELETED' as const, rotations_deleted: removed, deleted_at: isoNow(this.#ctx.clock) };
  }
}
