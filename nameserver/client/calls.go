package client

import (
	"context"

	"github.com/rocketpilot/rocketpilot/remoting"
)

func (c *Client) call(ctx context.Context, code int32, ext map[string]string) (*remoting.Command, error) {
	resp, err := c.Invoke(ctx, code, ext)
	if err != nil {
		return nil, err
	}
	if resp.Code != remoting.Success {
		return nil, &ResponseError{Code: resp.Code, Remark: resp.Remark}
	}
	return resp, nil
}

// GetRouteInfo asks for a topic's route (105) and decodes it; it also returns the raw body. A missing topic is a
// *ResponseError matching ErrTopicNotExist.
func (c *Client) GetRouteInfo(ctx context.Context, topic string) (*remoting.TopicRouteData, []byte, error) {
	body, err := c.GetRouteInfoRaw(ctx, topic)
	if err != nil {
		return nil, nil, err
	}
	route, err := remoting.DecodeTopicRouteData(body)
	if err != nil {
		return nil, nil, err
	}
	return route, body, nil
}

// GetRouteInfoRaw is GetRouteInfo without decoding, for callers that recognise bodies they already know. It asks
// for standard JSON (acceptStandardJsonOnly), which NameServers before 4.9.4 ignore.
func (c *Client) GetRouteInfoRaw(ctx context.Context, topic string) ([]byte, error) {
	resp, err := c.call(ctx, remoting.GetRouteInfoByTopic, map[string]string{"topic": topic, "acceptStandardJsonOnly": "true"})
	if err != nil {
		return nil, err
	}
	return resp.Body, nil
}

// GetBrokerClusterInfo asks for the broker and cluster tables (106).
func (c *Client) GetBrokerClusterInfo(ctx context.Context) (*remoting.ClusterInfo, error) {
	resp, err := c.call(ctx, remoting.GetBrokerClusterInfo, nil)
	if err != nil {
		return nil, err
	}
	return remoting.DecodeClusterInfo(resp.Body)
}

// GetAllTopicList asks for every topic (206). A NameServer with the list turned off answers ErrDisabled.
func (c *Client) GetAllTopicList(ctx context.Context) ([]string, error) {
	return c.topicList(ctx, remoting.GetAllTopicListFromNameServer, nil)
}

// GetTopicsByCluster asks for the topics of one broker cluster (224).
func (c *Client) GetTopicsByCluster(ctx context.Context, cluster string) ([]string, error) {
	return c.topicList(ctx, remoting.GetTopicsByCluster, map[string]string{"cluster": cluster})
}

func (c *Client) topicList(ctx context.Context, code int32, ext map[string]string) ([]string, error) {
	resp, err := c.call(ctx, code, ext)
	if err != nil {
		return nil, err
	}
	list, err := remoting.DecodeTopicList(resp.Body)
	if err != nil {
		return nil, err
	}
	return list.TopicList, nil
}

// GetKVConfig reads one KV config value (101). A missing key matches ErrNotFound.
func (c *Client) GetKVConfig(ctx context.Context, namespace, key string) (string, error) {
	resp, err := c.call(ctx, remoting.GetKVConfig, map[string]string{"namespace": namespace, "key": key})
	if err != nil {
		return "", err
	}
	return resp.Ext("value"), nil
}

// GetKVList reads a KV namespace (219). A missing namespace matches ErrNotFound.
func (c *Client) GetKVList(ctx context.Context, namespace string) (map[string]string, error) {
	resp, err := c.call(ctx, remoting.GetKVListByNamespace, map[string]string{"namespace": namespace})
	if err != nil {
		return nil, err
	}
	t, err := remoting.DecodeKVTable(resp.Body)
	if err != nil {
		return nil, err
	}
	return t.Table, nil
}
