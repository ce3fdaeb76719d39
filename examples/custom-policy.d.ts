import type { PolicyFactory } from '../src/balancer/policy.ts';

declare const canaryPolicy: PolicyFactory;
export default canaryPolicy;
