import { HTTPRoute } from '@kubernetes-models/gateway-api/gateway.networking.k8s.io/v1/HTTPRoute';
import { ScaledObject } from '@kubernetes-models/keda/keda.sh/v1alpha1/ScaledObject';
import { TriggerAuthentication } from '@kubernetes-models/keda/keda.sh/v1alpha1/TriggerAuthentication';
import { PrometheusRule } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/PrometheusRule';
import { ServiceMonitor } from '@kubernetes-models/prometheus-operator/monitoring.coreos.com/v1/ServiceMonitor';
import { Deployment } from 'kubernetes-models/apps/v1/Deployment';
import { StatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { HorizontalPodAutoscaler } from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { Ingress } from 'kubernetes-models/networking.k8s.io/v1/Ingress';
import { NetworkPolicy } from 'kubernetes-models/networking.k8s.io/v1/NetworkPolicy';
import { PodDisruptionBudget } from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { PriorityClass } from 'kubernetes-models/scheduling.k8s.io/v1/PriorityClass';
import { ConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Pod } from 'kubernetes-models/v1/Pod';
import { Secret } from 'kubernetes-models/v1/Secret';
import { Service } from 'kubernetes-models/v1/Service';
import { ServiceAccount } from 'kubernetes-models/v1/ServiceAccount';
import type { KubeObject } from './chart.js';

/**
 * Validation of rendered objects against the Kubernetes OpenAPI schemas (kubernetes-models) and the
 * KEDA and prometheus-operator CRD schemas. A kind the chart starts to render must be added here.
 */

interface Model<T> {
  readonly apiVersion: string;
  readonly kind: string;
  is(value: unknown): value is T;
  new (data: T): { validate(): void };
}

function entry<T>(model: Model<T>): [string, (object: KubeObject) => void] {
  return [
    `${model.apiVersion}/${model.kind}`,
    (object) => {
      if (!model.is(object)) throw new Error(`${object.kind} ${object.metadata.name} is not a ${model.apiVersion} ${model.kind}`);
      new model(object).validate();
    },
  ];
}

const VALIDATORS = new Map<string, (object: KubeObject) => void>([
  entry(ConfigMap),
  entry(Deployment),
  entry(HorizontalPodAutoscaler),
  entry(HTTPRoute),
  entry(Ingress),
  entry(Namespace),
  entry(NetworkPolicy),
  entry(Pod),
  entry(PodDisruptionBudget),
  entry(PriorityClass),
  entry(PrometheusRule),
  entry(ScaledObject),
  entry(Secret),
  entry(Service),
  entry(ServiceAccount),
  entry(ServiceMonitor),
  entry(StatefulSet),
  entry(TriggerAuthentication),
]);

/** Throws naming the object and the schema violation, or when no schema is known for its kind. */
export function validateObject(object: KubeObject): void {
  const validate = VALIDATORS.get(`${object.apiVersion}/${object.kind}`);
  if (validate === undefined) throw new Error(`no schema known for ${object.apiVersion} ${object.kind} (${object.metadata.name})`);
  try {
    validate(object);
  } catch (err) {
    throw new Error(`${object.kind} ${object.metadata.name}: ${err instanceof Error ? err.message : String(err)}`, { cause: err });
  }
}

export {
  ConfigMap,
  Deployment,
  HorizontalPodAutoscaler,
  HTTPRoute,
  Ingress,
  NetworkPolicy,
  Pod,
  PodDisruptionBudget,
  PrometheusRule,
  ScaledObject,
};
export { Secret, Service, ServiceMonitor, StatefulSet, TriggerAuthentication };
