/** Admin API view of autoscaling decisions. */

import type { Discovery } from '../../discovery/index.ts';
import { AdminError, type AdminRoute } from '../router.ts';

export function autoscaleRoutes(discovery: () => Discovery | undefined): AdminRoute[] {
  return [
    {
      method: 'GET',
      path: '/api/v1/autoscale',
      mutates: false,
      summary: 'Autoscaled services with their current count and recent decisions',
      handle: () => ({
        services: [...(discovery()?.autoscalers ?? new Map()).entries()].map(([service, scaler]) => ({ service, decisions: scaler.decisions.slice(-20) })),
      }),
    },
    {
      method: 'GET',
      path: '/api/v1/autoscale/:service',
      mutates: false,
      summary: "One service's autoscaling decisions (newest last), each with the metric values that caused it",
      handle: ({ params }) => {
        const scaler = discovery()?.autoscalers.get(params.service as string);
        if (!scaler) throw new AdminError(404, `service "${params.service}" is not autoscaled`, 'service');
        return { service: params.service, decisions: scaler.decisions };
      },
    },
  ];
}
