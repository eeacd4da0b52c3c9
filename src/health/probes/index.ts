/**
 * Every protocol's probe, by the `protocol` of a health check: what the checker is given as
 * `CheckerDeps.probes`. HTTPS is the HTTP probe, which switches to TLS by protocol.
 */
import type { HealthCheck } from '../../model/health-check.ts';
import type { Probe } from '../probe.ts';
import { dnsProbe } from './dns.ts';
import { grpcProbe } from './grpc.ts';
import { httpProbe } from './http.ts';
import { ldapProbe } from './ldap.ts';
import { mysqlProbe } from './mysql.ts';
import { pgsqlProbe } from './pgsql.ts';
import { redisProbe } from './redis.ts';
import { tcpProbe } from './tcp.ts';

export const PROBES: Partial<Record<HealthCheck['protocol'], Probe>> = {
  TCP: tcpProbe,
  HTTP: httpProbe,
  HTTPS: httpProbe,
  REDIS: redisProbe,
  PGSQL: pgsqlProbe,
  MYSQL: mysqlProbe,
  LDAP: ldapProbe,
  DNS: dnsProbe,
  GRPC: grpcProbe,
};
