/**
 * The certificates API (seed 000 §5): certificates are parsed and checked on upload, the private
 * key is sealed before it is stored and never leaves again through the API.
 */
import { type Certificate, CERTIFICATE_DEFAULTS, type CertificateCreate, type CertificateQuery } from '../model/certificate.ts';
import { DEFAULT_SCOPE_ID, isoSeconds } from '../model/common.ts';
import type { Listener } from '../model/listener.ts';
import { CertificateProblem, inspectCertificate } from '../tls/certificate.ts';
import type { SecretBox } from '../tls/secret-box.ts';
import { type ControlContext, isoNow, paging, writeAndApply } from './context.ts';
import { FulcrumError, notFound } from './errors.ts';
import { allocateId } from './ids.ts';

const DAY_MS = 86_400_000;

export class CertificateService {
  readonly #ctx: ControlContext;
  readonly #box: SecretBox;

  constructor(ctx: ControlContext, box: SecretBox) {
    this.#ctx = ctx;
    this.#box = box;
  }

  /** Listeners that serve the certificate (HTTPS listeners name theirs in `tls.certificate_ids`). */
  async #usedBy(certId: string): Promise<string[]> {
    const listeners = (await this.#ctx.store.list<Listener & { tls?: { certificate_ids?: string[] } }>('listener')).items;
    return listeners.filter((l) => l.body.tls?.certificate_ids?.includes(certId)).map((l) => l.id);
  }

  #status(c: Certificate, now: number): { status: 'ACTIVE' | 'EXPIRING_SOON' | 'EXPIRED'; days: number } {
    const left = Date.parse(c.valid_until) - now;
    const days = Math.floor(left / DAY_MS);
    if (left <= 0) return { status: 'EXPIRED', days };
    const soon = Math.max(CERTIFICATE_DEFAULTS.expiring_soon_days, ...c.notify_before_expiry_days);
    return { status: days < soon ? 'EXPIRING_SOON' : 'ACTIVE', days };
  }

  async #view(c: Certificate) {
    const { private_key_sealed: _sealed, ...shown } = c;
    const { status, days } = this.#status(c, this.#ctx.clock.now());
    return { ...shown, status, days_until_expiry: days, in_use_by_listeners: await this.#usedBy(c.cert_id), in_use_by_pools: [] as string[] };
  }

  async create(input: CertificateCreate) {
    const now = this.#ctx.clock.now();
    let facts;
    try {
      facts = inspectCertificate(input.certificate_pem, input.private_key_pem, input.chain_pem, now);
    } catch (err) {
      if (err instanceof CertificateProblem) throw new FulcrumError('INVALID_CERTIFICATE', `The certificate cannot be used: ${err.message}`, { reason: err.message });
      throw err;
    }
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
        domains: facts.domains,
        type: facts.type,
        key_type: facts.key_type,
        issuer: facts.issuer,
        subject: facts.subject,
        valid_from: isoSeconds(facts.valid_from),
        valid_until: isoSeconds(facts.valid_until),
        fingerprint_sha256: facts.fingerprint_sha256,
        certificate_pem: input.certificate_pem,
        chain_pem: input.chain_pem ?? null,
        private_key_sealed: this.#box.seal(input.private_key_pem),
        auto_renew: input.auto_renew ?? false,
        notify_before_expiry_days: input.notify_before_expiry_days ?? [...CERTIFICATE_DEFAULTS.notify_before_expiry_days],
        ...scope,
        created_at: stamp,
        updated_at: stamp,
        version: 0,
      };
      return (await tx.put('certificate', id, null, scope, body, 'absent')).body;
    });
    return this.#view(cert);
  }

  async get(certId: string) {
    const found = await this.#ctx.store.get<Certificate>('certificate', certId);
    if (!found) throw notFound.certificate(certId);
    return this.#view(found.body);
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
    const page = await Promise.all(matching.slice(p.offset, p.offset + p.limit).map((c) => this.#view(c)));
    return { certificates: page, pagination: p.block(matching.length), summary };
  }

  async delete(certId: string) {
    await writeAndApply(this.#ctx, async (tx) => {
      const found = await tx.get<Certificate>('certificate', certId);
      if (!found) throw notFound.certificate(certId);
      const users = await this.#usedBy(certId);
      if (users.length > 0) {
        throw new FulcrumError('CERTIFICATE_IN_USE', `Certificate '${certId}' is served by listener(s) ${users.join(', ')}; remove it from them first`, {
          cert_id: certId,
          listener_ids: users,
        });
      }
      await tx.delete('certificate', certId, found.version);
    });
    return { cert_id: certId, status: 'DELETED' as const, deleted_at: isoNow(this.#ctx.clock) };
  }
}
