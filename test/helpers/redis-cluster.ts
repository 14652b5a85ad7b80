// The local cluster is shared with the benchmark (`npm run bench -- --cluster`): it lives in src/runtime.
export { clusterUnsupported, LocalRedisCluster } from '../../src/runtime/local-redis-cluster.js';
